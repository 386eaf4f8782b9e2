"""Run profiles (``DEPCACHE_RELIABILITY_PROFILE=short|long``) and the report files.

``short`` (the default) is what a plain ``python -m pytest`` runs, in CI too; ``long`` is the
run whose figures go into the README. With ``DEPCACHE_RELIABILITY_REPORT=1`` every test writes
its figures to ``bench/results/reliability/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["PROFILE", "RESULTS", "Profile", "write_report"]

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "reliability"


@dataclass(frozen=True)
class Profile:
    """How long and how hard each reliability test runs."""

    name: str
    staleness_seconds: float  # traffic per staleness configuration (threads, processes)
    staleness_max_reads: int  # a configuration stops once its readers made this many reads
    staleness_min_reads: int  # a configuration that checks fewer reads fails
    restart_cycles: int  # server restarts per restart test
    memory_speedup: float  # simulated seconds per real second in the memory test
    memory_simulated_seconds: float  # simulated traffic in the memory test
    db_seconds: float  # traffic of the database checker (test_db_staleness.py)
    db_max_reads: int  # its readers stop after this many reads
    db_min_reads: int  # a database run that checks fewer reads fails
    timeout: float  # pytest-timeout of each test, seconds


SHORT = Profile(
    name="short",
    staleness_seconds=3.0,
    staleness_max_reads=200_000,
    staleness_min_reads=500,
    restart_cycles=1,
    memory_speedup=600.0,
    memory_simulated_seconds=3600.0,
    db_seconds=3.0,
    db_max_reads=100_000,
    db_min_reads=500,
    timeout=120.0,
)

LONG = Profile(
    name="long",
    staleness_seconds=120.0,
    staleness_max_reads=1_000_000,
    staleness_min_reads=20_000,
    restart_cycles=4,
    memory_speedup=100.0,
    memory_simulated_seconds=3600.0,
    db_seconds=600.0,
    db_max_reads=120_000,
    db_min_reads=100_000,
    timeout=1200.0,
)


def _profile() -> Profile:
    name = os.environ.get("DEPCACHE_RELIABILITY_PROFILE", "short").strip().lower() or "short"
    profiles = {"short": SHORT, "long": LONG}
    if name not in profiles:
        raise ValueError(f"DEPCACHE_RELIABILITY_PROFILE={name!r}: use 'short' or 'long'")
    return profiles[name]


PROFILE = _profile()


def reporting() -> bool:
    """Whether ``DEPCACHE_RELIABILITY_REPORT`` asks for report files."""
    return os.environ.get("DEPCACHE_RELIABILITY_REPORT", "").strip().lower() in {"1", "true", "yes"}


def write_report(name: str, figures: dict[str, Any], summary: list[str]) -> Path | None:
    """Write ``figures`` (JSON) and ``summary`` lines (markdown) when reporting is on.

    Returns the JSON path, or None when reporting is off.
    """
    if not reporting():
        return None
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "profile": asdict(PROFILE),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"meta": meta, **figures}, indent=2, sort_keys=True) + "\n")
    lines = [
        f"# {name} ({PROFILE.name} profile)",
        "",
        *summary,
        "",
        f"{meta['machine']}, Python {meta['python']}, {meta['written']}.",
        "",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    return path
