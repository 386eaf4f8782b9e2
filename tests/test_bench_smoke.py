"""Smoke test of the benchmark: `bench/bench_core.py --quick` runs against the test Redis and
reports every operation for every library. It asserts no timings: only that the benchmark works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench_core.py"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

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

pytestmark = pytest.mark.redis


def test_quick_benchmark_reports_every_operation_for_every_library(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--redis-url", REDIS_URL, "--json", str(out)],
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

    rows = {(row["label"], row["library"]): row for row in data["rows"]}
    missing = [(op, lib) for op in OPERATIONS for lib in LIBRARIES if (op, lib) not in rows]
    assert not missing, f"no row for {missing}"
    for op in OPERATIONS:
        if op.startswith("miss+store"):
            assert (op, "redis-py:cache-aside") in rows

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

    # the benchmark removed every key it wrote
    with redis.Redis.from_url(REDIS_URL) as client:
        left = list(client.scan_iter(match=f"{data['meta']['run_prefix']}-*", count=1000))
    assert left == []
