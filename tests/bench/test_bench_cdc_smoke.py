"""Smoke test of the CDC benchmark: ``python -m bench.bench_cdc --quick`` runs against a
PostgreSQL it starts, the real RabbitMQ and Redis, and every row it committed was invalidated on
both managers (the benchmark checks each one). It asserts no timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.bench_runs import run_bench

pytestmark = pytest.mark.redis


def test_quick_cdc_benchmark_invalidates_every_row(
    tmp_path: Path, redis_url: str, rabbitmq_url: str, logical_postgres: object
) -> None:
    out = tmp_path / "cdc.json"
    run_bench(
        "bench.bench_cdc",
        "--quick",
        *("--broker", rabbitmq_url, "--redis-url", redis_url, "--json", str(out)),
    )
    data = json.loads(out.read_text())
    assert data["problems"] == []
    assert data["pipeline"]["throughput"]["rows"] == 1000
    assert data["pipeline"]["throughput"]["rows_per_sec"] > 0
    assert data["pipeline"]["latency"]["changes"] >= 400
    readers = {entry["reader"] for entry in data["reading"]}
    assert readers == {"streaming replication protocol", "SQL interface, polled"}
    assert all("latency" in entry for entry in data["reading"])
