"""The Grafana dashboard (deploy/grafana/depcache.json) queries only metrics the code exports,
with labels they have, and shows every one of them: checked against a real exposition of the
cache's metrics, the worker's counters and its latency histograms."""

from __future__ import annotations

import json
import re
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry

import depcache
import depcache.metrics
import depcache_celery
from depcache import add_dependency, cache_with_deps
from depcache_celery.worker import metrics as worker_metrics
from depcache_celery.worker.monitoring import StatsCollector
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "deploy/grafana/depcache.json").read_text())


def _expressions() -> list[str]:
    return [
        target["expr"]
        for panel in DASHBOARD["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def _exported() -> dict[str, set[str]]:
    """Metric sample names to their label names, from a real exposition."""
    registry = CollectorRegistry()
    depcache.metrics.enable(registry)
    try:
        config = depcache.ConfigBase(prefix="dashboard", backend="memory")
        manager = depcache.get_or_create_cache_manager("dashboard", config=config)

        @cache_with_deps(cache_manager=manager)
        def f(refuse: bool) -> int:
            add_dependency("d")
            if refuse:  # the stale-set guard refuses the store
                manager.invalidate_dependency("d")
            return 1

        f(False)
        f(False)
        f(True)
        down = depcache.get_or_create_cache_manager(
            "dashboard-down",
            config=depcache.RedisConfig(url=f"redis://127.0.0.1:{free_port()}/0", prefix="dd"),
        )

        @cache_with_deps(cache_manager=down, silent_backend_errors=True)
        def g() -> int:
            return 1

        g()
        with pytest.raises(depcache.BackendError):
            down.invalidate_dependency("d")
    finally:
        depcache.metrics.disable()
    registry.register(StatsCollector())
    depcache_celery.stats.target_failed("dashboard")
    depcache_celery.stats.dead_letter("malformed")
    worker_metrics.observe_apply("dashboard", 0.01)
    worker_metrics.observe_invalidated("dashboard", [1.0])
    worker_metrics.observe_batch(0.01)
    text = prometheus_client.generate_latest(registry).decode()
    text += prometheus_client.generate_latest().decode()  # the worker's histograms
    exported: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, rest = line.partition("{")
        name = name.split(" ")[0]
        labels = set(re.findall(r'(\w+)="', rest)) if rest else set()
        exported.setdefault(name, set()).update(labels)
    return exported


def test_every_query_names_an_exported_metric_and_its_labels() -> None:
    exported = _exported()
    used: set[str] = set()
    for expr in _expressions():
        for name in re.findall(r"\b(depcache_[a-z_]+)", expr):
            assert name in exported, f"{name} is not exported (in {expr})"
            used.add(name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum"))
        for group in re.findall(r"by \(([^)]*)\)", expr):
            labels = {part.strip() for part in group.split(",")} - {"le"}
            names = re.findall(r"\b(depcache_[a-z_]+)", expr)
            assert any(labels <= exported[n] for n in names), (expr, labels)
    assert used  # the dashboard is not empty


def test_every_exported_metric_is_on_the_dashboard() -> None:
    queried = " ".join(_expressions())
    names = [
        *depcache.metrics.METRIC_NAMES,
        *worker_metrics.METRIC_NAMES,
        *(f"depcache_celery_{name}_total" for name in depcache_celery.worker.counters.COUNTERS),
        "depcache_celery_target_failures_total",
        "depcache_celery_dead_letters_total",
    ]
    for name in names:
        assert name in queried or f"{name}_bucket" in queried, f"{name} is not on the dashboard"


def test_the_dashboard_is_valid_grafana_json() -> None:
    assert DASHBOARD["uid"] == "depcache"
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "prometheus", panel["title"]
            assert panel["targets"], panel["title"]


@pytest.mark.parametrize("path", ["deploy/grafana/provisioning/dashboards/depcache.yml"])
def test_grafana_provisioning_loads_the_dashboard(path: str) -> None:
    text = (ROOT / path).read_text()
    assert "path: /var/lib/grafana/dashboards" in text
