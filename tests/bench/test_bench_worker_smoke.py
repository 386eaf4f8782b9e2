"""Smoke test of the worker benchmark: `python -m bench.bench_worker --quick` runs against the real
RabbitMQ and Redis, reports every path, and every event it published was invalidated on both
managers; `--quick --scale --deployments 3` runs several real worker processes on one queue and
on several queues, and one worker on three redis-server processes it starts, and loses nothing.
It asserts no timings: only that the benchmark works and checks what it claims.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection

from tests.support.bench_runs import run_bench

BENCH = "bench.bench_worker"  # run as a module from the checkout (cwd=ROOT)

PATHS = ["kombu consumer", "depcache_celery bus consumer", "one Celery task per event"]
LATENCY_PATHS = ["depcache_celery bus consumer", "one Celery task per event"]
QUICK_EVENTS = {"kombu consumer": 300, "depcache_celery bus consumer": 300}
QUICK_TASK_EVENTS = 200
QUICK_LATENCY_EVENTS = 200

pytestmark = pytest.mark.redis


def test_quick_worker_benchmark_invalidates_every_event(
    tmp_path: Path, redis_url: str, rabbitmq_url: str
) -> None:
    out = tmp_path / "worker.json"
    markdown = tmp_path / "worker.md"
    proc = run_bench(
        BENCH,
        "--quick",
        *("--broker", rabbitmq_url, "--redis-url", redis_url),
        *("--json", str(out), "--markdown", str(markdown)),
    )
    data = json.loads(out.read_text())
    assert data["problems"] == []

    rows = {row["path"]: row for row in data["throughput"]}
    assert sorted(rows) == sorted(PATHS)
    for name, row in rows.items():
        assert row["error"] is None, name
        assert row["events_per_sec_median"] is not None, name
        assert row["events_per_sec_median"] > 0, name
        assert row["ratio_to_kombu"] is not None, name
        (drain,) = row["drains"]
        events = QUICK_EVENTS.get(name, QUICK_TASK_EVENTS)
        assert drain["events"] == events, name
        # every event was consumed (kombu) or invalidated on both managers (the worker)
        assert drain["invalidated"] == events, name
        if name != "kombu consumer":
            written = drain["entries_written_per_manager"]
            assert written == events // 10, name
            assert sorted(drain["entries_removed"].values()) == [written, written], name
            assert drain["batches"] >= 1, name
    assert rows["one Celery task per event"]["drains"][0]["max_batch"] == 1
    assert data["ratios"]["bus_over_kombu"] is not None
    assert data["ratios"]["bus_cpu_over_kombu"] is not None
    assert data["ratios"]["target"] == 1.0
    assert data["ratios"]["cpu_target"] == 1.3
    # a quick run is too short to grade the ratios: it says so instead of MISSED or ok
    assert data["ratios"]["graded"] is False
    assert data["ratios"]["target_met"] is None
    assert data["ratios"]["cpu_target_met"] is None
    assert "not graded in --quick" in proc.stdout
    assert "MISSED" not in proc.stdout.split("Throughput:", 1)[1].split("Latency:", 1)[0]
    for name, row in rows.items():  # every drain's spread and CPU per event are reported
        assert row["events_per_sec_min"] <= row["events_per_sec_median"], name
        assert row["events_per_sec_median"] <= row["events_per_sec_max"], name
        assert row["cpu_us_per_event_median"] is not None, name

    latencies = {lat["path"]: lat for lat in data["latency"]}
    assert sorted(latencies) == sorted(LATENCY_PATHS)
    for name, lat in latencies.items():
        assert lat["error"] is None, name
        assert lat["lost"] == 0, name
        assert lat["published"] == QUICK_LATENCY_EVENTS, name
        assert lat["samples"] == QUICK_LATENCY_EVENTS, name
        assert len(lat["latencies_ms"]) == QUICK_LATENCY_EVENTS, name
        for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
            assert lat[key] is not None, (name, key)

    text = markdown.read_text()
    assert "### Throughput: events/s through the worker against a plain kombu consumer" in text
    assert "### Latency: publish to invalidated on every manager" in text

    # the benchmark deleted its queues and exchange, and its Redis keys
    meta = data["meta"]
    with Connection(rabbitmq_url) as conn:
        for queue in meta["queues"]:
            channel: Any = conn.channel()
            with pytest.raises(conn.channel_errors):  # NOT_FOUND: the queue is gone
                channel.queue_declare(queue=queue, passive=True)
        channel = conn.channel()
        with pytest.raises(conn.channel_errors):
            channel.exchange_declare(exchange=meta["exchange"], type="topic", passive=True)
    with redis.Redis.from_url(redis_url) as client:
        left = list(client.scan_iter(match=f"{meta['key_prefix']}-*", count=1000))
    assert left == []


SCALE_QUICK = [(1, 1), (1, 2), (2, 1)]  # (queues, worker processes per queue)
SCALE_EVENTS = 300


def test_quick_scale_and_deployments_lose_nothing(
    tmp_path: Path, redis_url: str, rabbitmq_url: str
) -> None:
    out = tmp_path / "scale.json"
    markdown = tmp_path / "scale.md"
    run_bench(
        BENCH,
        *("--quick", "--scale", "--deployments", "3"),
        *("--broker", rabbitmq_url, "--redis-url", redis_url),
        *("--json", str(out), "--markdown", str(markdown)),
    )
    data = json.loads(out.read_text())
    assert data["problems"] == []
    assert data["throughput"] == []  # only the modes asked for
    assert data["latency"] == []

    drains = data["scale"]
    assert [(d["queues"], d["workers_per_queue"]) for d in drains] == SCALE_QUICK
    managers = len(data["meta"]["managers"])
    assert managers == 2
    for d in drains:
        name = d["configuration"]
        assert d["error"] is None, name
        assert d["events"] == SCALE_EVENTS, name
        assert d["processes"] == d["queues"] * d["workers_per_queue"], name
        # nothing lost: every event invalidated on every manager, every entry removed
        assert d["invalidated"] == SCALE_EVENTS, name
        assert d["lost"] == 0, name
        assert d["entries_left"] == 0, name
        assert d["entries_written_per_manager"] == SCALE_EVENTS // 10, name
        # at-least-once: every message delivered, every (dependency, manager) applied, and
        # whatever was applied twice is counted as a duplicate
        assert d["deliveries"] is not None, name
        assert d["deliveries"] >= SCALE_EVENTS, name
        assert d["distinct_applied"] == SCALE_EVENTS * managers, name
        assert d["applied"] == d["distinct_applied"] + d["duplicates"], name
        assert d["duplicates"] >= 0, name
        assert d["events_per_sec"] is not None, name
        assert d["events_per_sec"] > 0, name

    dep = data["deployments"]
    assert dep["error"] is None
    assert dep["deployments"] == 3
    drain = dep["drain"]
    assert drain["error"] is None
    assert drain["invalidated"] == drain["events"] == 300
    written = drain["entries_written_per_manager"]
    assert written == 30
    assert sorted(drain["entries_removed"].values()) == [written] * 3
    lat = dep["latency"]
    assert lat["error"] is None
    assert lat["lost"] == 0
    assert lat["samples"] == lat["published"] == QUICK_LATENCY_EVENTS
    assert lat["p99_ms"] is not None
    assert lat["target_p99_ms"] == 50.0

    text = markdown.read_text()
    assert "### Scale: worker processes competing on one queue, and one queue per region" in text
    assert "### Deployments: one worker with 3 managers on 3 Redis" in text

    # the benchmark deleted its queues and exchange, and its Redis keys
    meta = data["meta"]
    with Connection(rabbitmq_url) as conn:
        for queue in meta["queues"]:
            channel: Any = conn.channel()
            with pytest.raises(conn.channel_errors):  # NOT_FOUND: the queue is gone
                channel.queue_declare(queue=queue, passive=True)
    with redis.Redis.from_url(redis_url) as client:
        left = list(client.scan_iter(match=f"{meta['key_prefix']}-*", count=1000))
    assert left == []
