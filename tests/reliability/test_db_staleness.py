"""The database staleness checker over real traffic (issue 14): cached reads of every kind
through instrumented SQLAlchemy engines in several processes, committed writes from several
processes through instrumented engines and as raw SQL that only ``depcache cdc`` sees, every
read checked against the database's history (``db_checker.py``). A negative control runs the
same traffic with read tracking switched off and must be caught.

Servers: PostgreSQL with ``wal_level=logical`` (started for the session), Redis, RabbitMQ, a
``depcache cdc`` process and an embedded worker (``tests/support/cdc_fixtures.py``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("sqlglot")

from tests.reliability.db_checker import DbHistory, DbVerdict
from tests.reliability.db_reads import QUERIES
from tests.reliability.db_traffic import DbSetup, run_db_traffic
from tests.reliability.db_workload import SCHEMA, seed_statements
from tests.reliability.profile import PROFILE, Profile, write_report
from tests.support.cdc_fixtures import CdcPipeline

pytestmark = [pytest.mark.redis, pytest.mark.timeout(PROFILE.timeout)]


def _setup(pipeline: CdcPipeline, redis_url: str, *, tracked: bool) -> DbSetup:
    pipeline.db.execute(*SCHEMA, *seed_statements())
    pipeline.barrier()  # the seeding is invalidated before any read
    return DbSetup(
        dsn=pipeline.db.dsn,
        managers=tuple((m.name, redis_url, m.prefix) for m in pipeline.managers),
        tracked=tracked,
    )


def _run(
    pipeline: CdcPipeline, setup: DbSetup, seconds: float, max_reads: int
) -> tuple[DbHistory, DbVerdict, list[str], float, float]:
    began = time.monotonic()
    history, errors = run_db_traffic(setup, pipeline.managers, seconds, max_reads)
    elapsed = time.monotonic() - began
    began = time.monotonic()
    verdict = history.check(QUERIES)
    return history, verdict, errors, elapsed, time.monotonic() - began


def _summary(figures: dict[str, object]) -> list[str]:
    return [
        f"{figures['reads']:,} reads checked, **{figures['stale_reads']} stale**, "
        f"{figures['in_window_reads']:,} in the allowed window, "
        f"{figures['racing_reads']:,} racing a write, {figures['changed_reads']:,} returning "
        f"a result other than the seeded one; {figures['transactions']:,} write transactions "
        f"({figures['tracked_transactions']:,} through instrumented engines, "
        f"{figures['raw_transactions']:,} raw SQL seen only by CDC), "
        f"{figures['rows_written']:,} rows written, {figures['barriers']:,} CDC barriers.",
        "",
        f"Raw writes, commit to visible (the next barrier returned): "
        f"{figures['raw_commit_to_visible_ms']} ms. Traffic {figures['seconds']} s, "
        f"check {figures['check_seconds']} s.",
        "",
        f"Reads per query: {figures['reads_per_query']}.",
    ]


def test_no_stale_database_read(
    cdc_pipeline: CdcPipeline, redis_url: str, profile: Profile, tmp_path: Path
) -> None:
    setup = _setup(cdc_pipeline, redis_url, tracked=True)
    history, verdict, errors, elapsed, checking = _run(
        cdc_pipeline, setup, profile.db_seconds, profile.db_max_reads
    )
    figures = {
        **verdict.figures(),
        "seconds": round(elapsed, 1),
        "check_seconds": round(checking, 1),
        "reads_per_second": round(verdict.reads / elapsed),
    }
    write_report("db-staleness", figures, _summary(figures))
    if verdict.stale or verdict.undecided:  # keep the evidence: DbHistory.load(path).check()
        history.save(tmp_path / "history.pickle")
    assert errors == [], errors[0]
    assert verdict.stale == [], (tmp_path, verdict.figures())
    assert verdict.undecided == 0, (tmp_path, verdict.undecided_per_query)
    # a real test: enough reads of every kind, writes of both kinds, races and CDC windows
    assert verdict.reads >= profile.db_min_reads, verdict.figures()
    assert set(verdict.per_query) == set(QUERIES), verdict.figures()
    assert verdict.checked >= verdict.reads // 2, verdict.figures()
    assert verdict.changed > 0
    assert verdict.racing > 0
    assert verdict.tracked_transactions >= 10
    assert verdict.transactions - verdict.tracked_transactions >= 10


def test_the_checker_catches_untracked_reads(
    cdc_pipeline: CdcPipeline, redis_url: str, profile: Profile, tmp_path: Path
) -> None:
    """Negative control: the readers' engine is not instrumented and every cached read depends
    on a static dependency; the same traffic and checker must find stale reads, each one
    explained by an earlier state of the database."""
    setup = _setup(cdc_pipeline, redis_url, tracked=False)
    history, verdict, errors, elapsed, checking = _run(
        cdc_pipeline, setup, min(profile.db_seconds, 3.0), 100_000
    )
    if not verdict.stale or verdict.unexplained:
        history.save(tmp_path / "history.pickle")
    figures = {
        **verdict.figures(),
        "seconds": round(elapsed, 1),
        "check_seconds": round(checking, 1),
    }
    write_report("db-staleness-negative-control", figures, _summary(figures))
    assert errors == [], errors[0]
    assert len(verdict.stale) > 0, (tmp_path, verdict.figures())
    assert verdict.unexplained == 0, (tmp_path, verdict.figures())
