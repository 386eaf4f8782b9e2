"""Smoke test of the benchmark: `python -m bench.bench_core --quick` runs against the test Redis and
reports every operation for every library, and the cluster column on a throw-away cluster. It
asserts no timings: only that the benchmark works.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.bench_runs import run_bench

BENCH = "bench.bench_core"  # run as a module from the checkout (cwd=ROOT)

OPERATIONS = [
    "hit",
    "miss+store k=1",
    "miss+store k=5",
    "miss+store k=20",
    "invalidate N=10",
    "invalidate N=1000",
    "invalidate N=10000",
]
LIBRARIES = ["redis-py", "simple-dep-cache", "depcache"]
CLUSTER_OPERATIONS = ["hit", "miss+store k=5", "invalidate N=10000"]
CLUSTER_LIBRARIES = ["redis-py", "depcache"]
# the cluster column needs redis-server and redis-cli; in CI their absence fails the run
CLUSTER_EXPECTED = bool(os.environ.get("CI")) or all(
    shutil.which(b) for b in ("redis-server", "redis-cli")
)

pytestmark = pytest.mark.redis


def _check_rows(rows: dict[tuple[str, str], dict[str, Any]]) -> None:
    for (label, library), row in rows.items():
        where = f"{label} / {library}"
        assert row["error"] is None, where
        assert row["ops_per_sec"] is not None, where
        assert row["ops_per_sec"] > 0, where
        assert row["seconds_per_op_repeats"], where
        assert row["ratio_to_raw"] is not None, where
        assert row["counted_ops"] > 0, where
        assert row["commands_sent_per_op"] > 0, where
        assert row["server_commands_per_op"] > 0, where
        assert row["commands_sent_breakdown"], where


def test_quick_benchmark_reports_every_operation_for_every_library(
    tmp_path: Path, redis_url: str
) -> None:
    out = tmp_path / "bench.json"
    markdown = tmp_path / "core.md"
    run_bench(
        BENCH, "--quick", "--redis-url", redis_url, "--json", str(out), "--markdown", str(markdown)
    )
    data = json.loads(out.read_text())
    assert data["problems"] == []

    rows = {(row["label"], row["library"]): row for row in data["rows"]}
    missing = [(op, lib) for op in OPERATIONS for lib in LIBRARIES if (op, lib) not in rows]
    assert not missing, f"no row for {missing}"
    for op in OPERATIONS:
        if op.startswith("miss+store"):
            assert (op, "redis-py:cache-aside") in rows
    _check_rows(rows)
    assert "### Standalone Redis" in markdown.read_text()

    # the cluster column
    cluster = data["cluster"]
    if not CLUSTER_EXPECTED:
        assert cluster is None or cluster["skipped"], cluster
    else:
        assert cluster is not None
        assert cluster["skipped"] is None
        assert cluster["problems"] == []
        crows = {(row["label"], row["library"]): row for row in cluster["rows"]}
        wanted = [(op, lib) for op in CLUSTER_OPERATIONS for lib in CLUSTER_LIBRARIES]
        wanted.append(("miss+store k=5", "redis-py:cache-aside"))
        missing = [key for key in wanted if key not in crows]
        assert not missing, f"no cluster row for {missing}"
        _check_rows(crows)
        comparison = {c["operation"]: c for c in cluster["comparison"]}
        assert sorted(comparison) == sorted(CLUSTER_OPERATIONS)
        for op, c in comparison.items():
            for key in (
                "depcache_cluster_over_standalone",
                "redis_py_cluster_over_standalone",
                "depcache_cluster_over_redis_py_cluster",
            ):
                assert c[key] is not None, (op, key)
        assert "### Cluster vs standalone" in markdown.read_text()

    # the benchmark removed every key it wrote
    with redis.Redis.from_url(redis_url) as client:
        left = list(client.scan_iter(match=f"{data['meta']['run_prefix']}-*", count=1000))
    assert left == []
