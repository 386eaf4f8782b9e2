"""Smoke test of the server-time benchmark: ``python -m bench.bench_server --quick`` runs against
the test Redis and reports both sides with a server time, and ``--instructions`` counts both
sides' server instructions on a redis-server under valgrind. It asserts no timings: only that
the benchmark works and measured something on each side.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.bench_runs import ROOT, run_bench

pytestmark = pytest.mark.redis


def test_quick_server_benchmark_reports_both_sides(tmp_path: Path, redis_url: str) -> None:
    out = tmp_path / "server.json"
    markdown = tmp_path / "server.md"
    proc = run_bench(
        "bench.bench_server",
        *("--quick", "--redis-url", redis_url),
        *("--json", str(out), "--markdown", str(markdown)),
    )
    data = json.loads(out.read_text())
    results = data["results"]
    assert set(results) == {"depcache", "redis-py:cache-aside"}
    for side, measured in results.items():
        assert measured["cpu"], side
        assert all(v > 0 for v in measured["cpu"]), side
        assert measured["server"], side
        assert all(v > 0 for v in measured["server"]), side
    # depcache's scripts run commands inside them; cache-aside sends its own
    assert all(v > 0 for v in results["depcache"]["inside"])
    assert "A standalone miss: client CPU and server time per operation" in markdown.read_text()
    assert "redis-py:cache-aside" in proc.stdout


def test_instructions_are_counted_on_each_side(tmp_path: Path) -> None:
    """``--instructions`` counts, under callgrind, what a miss and a hit cost the server: a
    count per side and kind, and depcache's scripts do more than one GET (a hit: the entry and
    its markers) or cache-aside's miss (the stale-set guard and the index upkeep)."""
    out = tmp_path / "server.json"
    markdown = tmp_path / "server.md"
    run_bench(
        "bench.bench_server",
        *("--quick", "--instructions", "--json", str(out), "--markdown", str(markdown)),
    )
    counts = json.loads(out.read_text())["instructions"]
    assert set(counts) == {"depcache", "redis-py:cache-aside"}
    for side, kinds in counts.items():
        assert set(kinds) == {"miss", "hit"}, side
        assert all(v > 0 for v in kinds.values()), side
    assert counts["depcache"]["miss"] > counts["redis-py:cache-aside"]["miss"]
    assert counts["depcache"]["hit"] > counts["redis-py:cache-aside"]["hit"]
    assert "Server instructions per operation" in markdown.read_text()


def test_run_as_a_file_says_how_to_run_it() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_server.py")],
        cwd=ROOT / "bench",
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "python -m bench.bench_server" in proc.stderr
