"""Smoke test of the worker benchmark: `bench/bench_worker.py --quick` runs against the real
RabbitMQ and Redis, reports every path, and every event it published was invalidated on both
managers. It asserts no timings: only that the benchmark works and checks what it claims.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench_worker.py"

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
    proc = subprocess.run(
        [
            *(sys.executable, str(BENCH), "--quick"),
            *("--broker", rabbitmq_url, "--redis-url", redis_url),
            *("--json", str(out), "--markdown", str(markdown)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, (
        f"bench exited {proc.returncode}\n--- stdout (tail)\n{proc.stdout[-4000:]}"
        f"\n--- stderr (tail)\n{proc.stderr[-4000:]}"
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
    assert data["ratios"]["target"] == 0.8

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
