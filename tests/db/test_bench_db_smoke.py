"""Smoke test of the database benchmark: `python -m bench.bench_db --quick` runs on the test
PostgreSQL and reports both parts. It asserts no timings: only that the benchmark works and that
no cached entry was stale in its mixed workload."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.db.conftest import ADMIN_URL

ROOT = Path(__file__).resolve().parents[2]


def test_quick_db_benchmark_reports_both_parts(tmp_path: Path, pg_dsn: str) -> None:
    out = tmp_path / "db.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_db", "--quick", "--pg-url", ADMIN_URL,
         "--json", str(out), "--markdown", str(tmp_path / "db.md")],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads(out.read_text())
    assert data["problems"] == []
    cost = data["statement_cost"]
    assert cost["ratio_outside"] > 0
    assert cost["ratio_inside"] > 0
    rows, tables = data["precision"]["rows"], data["precision"]["tables"]
    assert rows["stale"] == 0
    assert tables["stale"] == 0
    assert tables["removed"] > rows["removed"]  # table level removes more
    assert "Precision" in (tmp_path / "db.md").read_text()
