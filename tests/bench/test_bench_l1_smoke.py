"""Smoke test of the L1 benchmark: `python -m bench.bench_l1 --quick` runs against the test Redis
and reports every hit row and both propagation readers. It asserts no timings: only that the
benchmark works.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from tests.support.bench_runs import run_bench

BENCH = "bench.bench_l1"  # run as a module from the checkout (cwd=ROOT)

HIT_ROWS = [
    "depcache L1 hit",
    "depcache L1 hit, l1_validate",
    "depcache Redis hit",
    "redis-py GET + decode",
    "cachetools LRUCache",
    "functools.lru_cache",
]
READERS = ["yielding reader", "busy reader", "reader under load"]
QUICK_SAMPLES = 50

pytestmark = pytest.mark.redis


def test_quick_l1_benchmark_reports_every_row(tmp_path: Path, redis_url: str) -> None:
    out = tmp_path / "l1.json"
    markdown = tmp_path / "l1.md"
    run_bench(
        BENCH, "--quick", "--redis-url", redis_url, "--json", str(out), "--markdown", str(markdown)
    )
    data = json.loads(out.read_text())
    assert data["problems"] == []

    hits = {row["name"]: row for row in data["hits"]}
    assert sorted(hits) == sorted(HIT_ROWS)
    for name, row in hits.items():
        assert row["error"] is None, name
        assert row["seconds_per_call_median"] is not None, name
        assert row["seconds_per_call_median"] > 0, name
        assert row["seconds_per_call_repeats"], name
        assert row["ratio_to_l1_hit"] is not None, name
    # the L1 row was served from L1, the Redis row from Redis (counted, not timed)
    assert hits["depcache L1 hit"]["backend_lookups_per_call"] == 0
    assert hits["depcache Redis hit"]["backend_lookups_per_call"] == 1
    for key in (
        "redis_hit_over_l1_hit",
        "l1_hit_over_cachetools",
        "l1_hit_over_lru_cache",
        "l1_validate_hit_over_redis_hit",
        "l1_validate_hit_over_redis_py_get",
    ):
        assert data["ratios"][key] is not None, key
    # the report says how loaded the machine was, at the start and at the end
    assert data["meta"]["load_average"] is not None
    assert data["meta"]["load_average_end"] is not None

    readers = {p["reader"]: p for p in data["propagation"]}
    assert sorted(readers) == sorted(READERS)
    for name, p in readers.items():
        assert p["error"] is None, name
        assert p["timeouts"] == 0, name
        assert p["samples"] == QUICK_SAMPLES, name
        assert len(p["latencies_ms"]) == QUICK_SAMPLES, name
        for key in ("p50_ms", "p99_ms", "max_ms", "call_p50_ms"):
            assert p[key] is not None, (name, key)

    text = markdown.read_text()
    assert "### Hit: L1 against Redis and in-process caches" in text
    assert "### Invalidation propagation to another process's L1" in text

    # the benchmark removed every key it wrote
    with redis.Redis.from_url(redis_url) as client:
        left = list(client.scan_iter(match=f"{data['meta']['run_prefix']}-*", count=1000))
    assert left == []
