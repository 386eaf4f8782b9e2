"""The staleness checker over real traffic: 0 stale reads in every configuration.

Configurations: standalone Redis and the 3-master cluster, L1 on and off, readers and writers
as threads of one process or as separate processes. Each run is checked read by read against
the history of writes (``checker.py``). A negative control runs the same traffic through a
backend without the stale-set guard and must be caught.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability.profile import PROFILE, Profile, write_report
from tests.reliability.traffic import Setup, run_processes, run_threads

pytestmark = [pytest.mark.redis, pytest.mark.timeout(PROFILE.timeout)]

#: Configurations whose readers also go through a nested cached call (``page`` over ``row``).
#: All of them since the holes replayed in test_nested_staleness.py were fixed (an inner L1
#: hit, an inner hit during a cluster invalidation).
NESTED_SAFE = {"standalone-nol1", "standalone-l1", "cluster-nol1", "cluster-l1"}

_rows: list[dict[str, Any]] = []


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    """After the module: one table of every configuration run (when reporting)."""
    yield
    if not _rows:
        return
    total = sum(r["reads"] for r in _rows)
    stale = sum(r["stale_reads"] for r in _rows)
    lines = [
        f"{total:,} reads checked in all, {stale} stale.",
        "",
        "| configuration | reads | checked | racing | old but allowed | writes | stale |"
        " impossible | reads/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in _rows:
        lines.append(
            f"| {r['configuration']} | {r['reads']:,} | {r['checked_reads']:,} | "
            f"{r['racing_reads']:,} | {r['old_but_allowed_reads']:,} | {r['writes']:,} | "
            f"{r['stale_reads']} | {r['impossible_reads']} | {r['reads_per_second']:,.0f} |"
        )
    lines += [
        "",
        "*checked*: reads that started after at least one invalidation of their key was visible;"
        " *racing*: reads that overlapped a write and its invalidation; *old but allowed*:"
        " racing reads that returned the version before a write that started before them.",
    ]
    write_report("staleness", {"total_reads": total, "stale_reads": stale, "runs": _rows}, lines)


def _setup(
    kind: str, l1: bool, prefix: str, redis_url: str, request: pytest.FixtureRequest
) -> Setup:
    if kind == "cluster":
        request.getfixturevalue("cluster_nodes")  # so the prefix fixture cleans the cluster
        url = str(request.getfixturevalue("cluster_url"))
    else:
        url = redis_url
    setup = Setup(url=url, cluster=kind == "cluster", l1=l1, prefix=prefix, truth_url=redis_url)
    return dataclasses.replace(setup, nested=0.3 if setup.label in NESTED_SAFE else 0.0)


@pytest.mark.parametrize("mode", ["threads", "processes"])
@pytest.mark.parametrize("l1", [False, True], ids=["nol1", "l1"])
@pytest.mark.parametrize("kind", ["standalone", "cluster"])
def test_no_stale_read(
    kind: str,
    l1: bool,
    mode: str,
    rel_prefix: str,
    redis_url: str,
    profile: Profile,
    request: pytest.FixtureRequest,
) -> None:
    setup = _setup(kind, l1, rel_prefix, redis_url, request)
    seconds = profile.staleness_seconds
    began = time.monotonic()
    if mode == "threads":
        history, errors = run_threads(setup, seconds, profile.staleness_max_reads)
    else:
        history, errors = run_processes(setup, seconds, profile.staleness_max_reads)
    elapsed = time.monotonic() - began  # processes: includes starting them
    verdict = history.check()
    figures = {
        "configuration": f"{mode}, {setup.label}{', nested' if setup.nested else ''}",
        "seconds": round(elapsed, 2),
        "reads_per_second": verdict.reads / elapsed,
        **verdict.figures(),
    }
    _rows.append(figures)
    write_report(f"staleness-{mode}-{setup.label}", figures, [str(figures)])
    assert errors == []
    assert verdict.stale == [], verdict.figures()
    assert verdict.impossible == [], verdict.figures()
    # the run was a real test: enough reads, most of them checked, and races happened
    assert verdict.reads >= profile.staleness_min_reads, verdict.figures()
    assert verdict.writes >= 20
    assert verdict.checked >= verdict.reads // 2
    assert verdict.racing > 0


@pytest.mark.parametrize("kind", ["standalone", "cluster"])
def test_validated_l1_serves_nothing_an_invalidation_already_voided(
    kind: str, rel_prefix: str, redis_url: str, profile: Profile, request: pytest.FixtureRequest
) -> None:
    """Reader processes with an L1 and ``l1_validate``, checked strictly: a read that started
    after an invalidation returned must see it, announcement or not."""
    setup = dataclasses.replace(
        _setup(kind, True, rel_prefix, redis_url, request), l1_validate=True, strict=True
    )
    began = time.monotonic()
    history, errors = run_processes(setup, profile.staleness_seconds, profile.staleness_max_reads)
    elapsed = time.monotonic() - began
    verdict = history.check()
    figures = {
        "configuration": f"processes, {setup.label}, checked strictly",
        "seconds": round(elapsed, 2),
        "reads_per_second": verdict.reads / elapsed,
        **verdict.figures(),
    }
    _rows.append(figures)
    write_report(f"staleness-processes-{setup.label}", figures, [str(figures)])
    assert errors == []
    assert verdict.stale == [], verdict.figures()
    assert verdict.impossible == [], verdict.figures()
    assert verdict.reads >= profile.staleness_min_reads, verdict.figures()
    assert verdict.racing > 0


def test_strict_check_catches_an_l1_that_waits_for_announcements(
    rel_prefix: str, redis_url: str, profile: Profile, request: pytest.FixtureRequest
) -> None:
    """The negative control of the test above: without ``l1_validate`` an L1 serves an entry
    until the announcement of its invalidation arrives, which the strict check counts."""
    setup = dataclasses.replace(
        _setup("standalone", True, rel_prefix, redis_url, request), strict=True
    )
    history, errors = run_processes(setup, min(profile.staleness_seconds, 5.0), 200_000)
    verdict = history.check()
    write_report("staleness-strict-negative-control", verdict.figures(), [str(verdict.figures())])
    assert errors == []
    assert verdict.impossible == []
    assert len(verdict.stale) > 0, verdict.figures()


def test_checker_catches_a_cache_without_the_guard(
    rel_prefix: str, redis_url: str, profile: Profile
) -> None:
    """The same traffic through a backend that stores unconditionally is caught stale."""
    setup = Setup(
        url=redis_url,
        cluster=False,
        l1=False,
        prefix=rel_prefix,
        truth_url=redis_url,
        keys=4,
        unguarded=True,
    )
    history, errors = run_threads(setup, min(profile.staleness_seconds, 5.0), 1_000_000)
    verdict = history.check()
    write_report("staleness-negative-control", verdict.figures(), [str(verdict.figures())])
    assert errors == []
    assert verdict.impossible == []
    assert len(verdict.stale) > 0, verdict.figures()
