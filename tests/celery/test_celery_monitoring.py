"""depcache_celery's counters for operators: the ``depcache_stats`` inspect command on a real
embedded worker, and the Prometheus collector (and its HTTP server)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request

import pytest
from celery.worker.control import Panel

import depcache
import depcache_celery
from depcache_celery import install
from depcache_celery.worker import counters
from depcache_celery.worker.monitoring import (
    INSPECT_COMMAND,
    StatsCollector,
    inspect_stats,
    prometheus_port,
    register_prometheus,
)
from tests.support.celery_fixtures import Names, embedded_worker, fill, make_app, wait_for
from tests.support.servers import free_port

prometheus_client = pytest.importorskip("prometheus_client")

Managers = tuple[depcache.CacheManager, depcache.CacheManager]


def _count_some() -> None:
    stats = depcache_celery.stats
    stats.add("events", 3)
    stats.add("dependencies", 5)
    stats.add("entries_removed", 7)
    stats.add("retries")
    stats.target_failed("cache-a")
    stats.target_failed("cache-a")
    stats.dead_letter("malformed")


def test_inspect_command_is_registered_once() -> None:
    assert Panel.meta[INSPECT_COMMAND].type == "inspect"
    handler = Panel.data[INSPECT_COMMAND]
    from depcache_celery.worker import monitoring  # noqa: PLC0415

    monitoring._register_inspect_command()
    assert Panel.data[INSPECT_COMMAND] is handler


@pytest.mark.redis
def test_inspect_depcache_stats_on_a_worker(
    rabbitmq_broker: str, names: Names, two_managers: Managers
) -> None:
    app = make_app(rabbitmq_broker, names, worker_enable_remote_control=True)
    install(app)
    for manager in two_managers:
        fill(manager, {"u1": {"user:1"}, "u2": {"user:2"}})
    with embedded_worker(app) as worker:
        app.send_task("depcache.invalidate", args=[["user:1"]])
        wait_for(lambda: not any(m.exists("u1") for m in two_managers), what="the invalidation")
        hostname = str(worker.hostname)  # type: ignore[attr-defined]
        # only this worker: other workers may share the broker
        replies = inspect_stats(app, timeout=5.0, destination=[hostname])
        # the same through Celery's own inspect API (what ``celery inspect depcache_stats`` calls)
        inspect = app.control.inspect(timeout=5.0, destination=[hostname])
        raw: object = inspect._request(INSPECT_COMMAND)
    assert set(replies) == {hostname}
    counts = replies[hostname]
    assert counts["dependencies"] == 1
    assert isinstance(counts["entries_removed"], int)
    assert counts["entries_removed"] >= 2
    assert counts["events"] == 0
    assert counts["target_failures"] == {}
    assert counts["dead_letters"] == {}
    assert raw == replies


def test_collector_reads_the_counters_on_each_scrape() -> None:
    registry = prometheus_client.CollectorRegistry()
    registry.register(StatsCollector())
    text = prometheus_client.generate_latest(registry).decode()
    assert "depcache_celery_events_total 0.0" in text
    assert "depcache_celery_target_failures_total{" not in text
    _count_some()
    text = prometheus_client.generate_latest(registry).decode()
    for line in (
        "depcache_celery_events_total 3.0",
        "depcache_celery_dependencies_total 5.0",
        "depcache_celery_entries_removed_total 7.0",
        "depcache_celery_retries_total 1.0",
        'depcache_celery_target_failures_total{manager="cache-a"} 2.0',
        'depcache_celery_dead_letters_total{kind="malformed"} 1.0',
    ):
        assert line in text.splitlines()


def test_install_registers_into_the_default_registry_once() -> None:
    app = make_app("memory://", Names("x", "x.ev", "x.q", "x.dead", "x.tasks"))
    install(app)
    assert register_prometheus()  # again: no duplicate-timeseries error
    _count_some()
    text = prometheus_client.generate_latest().decode()
    assert "depcache_celery_events_total 3.0" in text.splitlines()
    assert 'depcache_celery_target_failures_total{manager="cache-a"} 2.0' in text.splitlines()


def test_prometheus_port_setting() -> None:
    assert prometheus_port({}, {}) is None
    assert prometheus_port({"depcache_prometheus_port": 9100}, {}) == 9100
    assert prometheus_port({}, {"DEPCACHE_PROMETHEUS_PORT": "9101"}) == 9101
    for bad in ("nine", 0, 70000, True):
        with pytest.raises(depcache.ConfigError, match="depcache_prometheus_port"):
            prometheus_port({"depcache_prometheus_port": bad}, {})


def test_worker_serves_metrics_over_http(rabbitmq_broker: str, names: Names) -> None:
    port = free_port()
    app = make_app(rabbitmq_broker, names, depcache_prometheus_port=port)
    install(app)
    _count_some()
    url = f"http://127.0.0.1:{port}/metrics"
    with embedded_worker(app), urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    assert "depcache_celery_dependencies_total 5.0" in text.splitlines()
    assert 'depcache_celery_dead_letters_total{kind="malformed"} 1.0' in text.splitlines()
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass  # the server stopped with the worker


def test_worker_snapshot_adds_children_and_keeps_those_that_exited() -> None:
    """The files pool children write (see test_celery_prefork_counters.py for real ones): a live
    child's is read on each call; an exited child's is folded into a running total, then
    removed."""
    sharing = counters._sharing
    sharing.directory.mkdir(exist_ok=True)
    exited = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(exited.stdout)
    live = sharing.directory / f"{os.getpid()}.json"
    dead = sharing.directory / f"{dead_pid}.json"
    retired_before = sharing.retired.snapshot()
    try:
        live.write_text(json.dumps({"events": 2, "target_failures": {"a": 1}}))
        dead.write_text(json.dumps({"events": 5, "dead_letters": {"expired": 1}}))
        depcache_celery.stats.add("events", 1)
        for _ in range(2):  # the exited child's counts stay once its file is gone
            snapshot = counters.worker_snapshot()
            assert snapshot["events"] == 8
            assert snapshot["target_failures"] == {"a": 1}
            assert snapshot["dead_letters"] == {"expired": 1}
            assert not dead.exists()
        assert live.exists()
    finally:
        live.unlink(missing_ok=True)
        dead.unlink(missing_ok=True)
        sharing.retired.reset()
        sharing.retired.absorb(retired_before)


def test_combine_adds_snapshots() -> None:
    total = counters.combine(
        {"events": 1, "target_failures": {"a": 1}},
        {"events": 2, "batches": 1, "target_failures": {"a": 2, "b": 1}, "dead_letters": {}},
    )
    assert total["events"] == 3
    assert total["batches"] == 1
    assert total["retries"] == 0
    assert total["target_failures"] == {"a": 3, "b": 1}
    assert total["dead_letters"] == {}
