"""The database checker itself, on hand-written histories: it flags what it must, and only that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

from tests.reliability.db_checker import DbHistory, DbVerdict
from tests.reliability.db_logs import DbReadLog
from tests.reliability.db_reads import QUERIES
from tests.reliability.db_workload import INITIAL, Image, pkey, ukey

ADA = (1, "ada", 10, 0)  # user 1: org 1
BOB = (1, "bob", 20, 0)  # user 2: org 1


def _history(*reads: tuple[str, tuple[Any, ...], float, float, Any]) -> DbHistory:
    initial: dict[int, Image] = dict.fromkeys(INITIAL)
    initial[ukey(1)], initial[ukey(2)] = ADA, BOB
    history = DbHistory(initial)
    log = DbReadLog()
    for read in reads:
        log.add(*read)
    history.add_reads("g", log)
    return history


def _check(history: DbHistory) -> DbVerdict:
    return history.check(QUERIES)


def _stale_starts(verdict: DbVerdict) -> list[float]:
    return [s.start for s in verdict.stale]


def test_a_tracked_write_must_be_seen_once_its_commit_returned() -> None:
    # user 1 moves to org 2 (version 5): started at 1.0, committed at 2.0
    history = _history(
        ("eq", (1,), 1.5, 1.6, [[1, 10, 0], [2, 20, 0]]),  # during the write: either is fine
        ("eq", (1,), 2.5, 2.6, [[2, 20, 0]]),  # after: fresh
        ("eq", (1,), 3.0, 3.1, [[1, 10, 0], [2, 20, 0]]),  # after, the old group: stale
        ("eq", (2,), 3.0, 3.1, []),  # the new group without it: stale too
        ("pk", (2,), 3.0, 3.1, [2, 1, "bob", 20, 0]),  # another row: nothing to see
    )
    history.writes.add(5, 1.0, 2.0, True, [(ukey(1), (2, "ada", 10, 5))])
    verdict = _check(history)
    assert _stale_starts(verdict) == [3.0, 3.0]
    assert [s.query for s in verdict.stale] == ["eq", "eq"]
    assert verdict.racing == 1
    assert verdict.in_window == 0
    assert all(s.explained_lag is not None for s in verdict.stale)  # older states gave them


def test_a_raw_write_is_due_once_the_next_barrier_returned() -> None:
    history = _history(
        ("pk", (1,), 2.5, 2.6, [1, 1, "ada", 10, 0]),  # committed, not yet through CDC
        ("pk", (1,), 3.5, 3.6, [1, 1, "ada", 10, 0]),  # the barrier begun after it returned
        ("pk", (1,), 3.7, 3.8, [1, 1, "ada", 99, 5]),
    )
    history.writes.add(5, 1.0, 2.0, False, [(ukey(1), (1, "ada", 99, 5))])
    history.barriers = [(1.9, 2.2), (2.1, 3.0)]  # the first began before the commit returned
    verdict = _check(history)
    assert _stale_starts(verdict) == [3.5]
    assert verdict.in_window == 1  # the read at 2.5
    assert verdict.figures()["raw_commit_to_visible_ms"]["max"] == pytest.approx(1000.0)


def test_a_raw_write_no_barrier_passed_is_never_due() -> None:
    history = _history(("pk", (1,), 9.0, 9.1, [1, 1, "ada", 10, 0]))
    history.writes.add(5, 1.0, 2.0, False, [(ukey(1), (1, "ada", 99, 5))])
    history.barriers = [(0.5, 1.5)]
    verdict = _check(history)
    assert verdict.stale == []
    assert verdict.in_window == 1


def test_a_raw_write_is_not_made_due_by_a_later_tracked_one_a_read_cannot_see() -> None:
    # raw version 5 moves user 1 from org 1 to org 2 (through CDC: due at 5.0); tracked version
    # 6 then changes its score (org 2 before and after: it never reaches reads of org 1)
    history = _history(
        ("eq", (1,), 3.0, 3.1, [[1, 10, 0], [2, 20, 0]]),  # user 1 still in org 1: in window
        ("eq", (1,), 6.0, 6.1, [[1, 10, 0], [2, 20, 0]]),  # after the barrier: stale
        ("pk", (1,), 3.0, 3.1, [1, 1, "ada", 10, 0]),  # pk sees version 6, so version 5: stale
        ("pk", (1,), 3.2, 3.3, [1, 2, "ada", 11, 6]),
    )
    history.writes.add(5, 1.0, 1.5, False, [(ukey(1), (2, "ada", 10, 5))])
    history.writes.add(6, 1.6, 2.0, True, [(ukey(1), (2, "ada", 11, 6))])
    history.barriers = [(1.55, 5.0)]
    verdict = _check(history)
    assert [(s.query, s.start) for s in verdict.stale] == [("eq", 6.0), ("pk", 3.0)]
    assert verdict.in_window == 1


def test_what_the_query_cannot_see_does_not_matter() -> None:
    # user 1 changes name only; eq(1) shows id, score, v: the old v is stale, but a count of
    # org 2 and a group other than the rows' is unaffected
    history = _history(
        ("agg", (1,), 3.0, 3.1, [2, 30]),  # count and sum unchanged by a rename: fresh
        ("agg", (2,), 3.0, 3.1, [0, 0]),
        ("eq", (1,), 3.0, 3.1, [[1, 10, 0], [2, 20, 0]]),  # v is seen: stale
    )
    history.writes.add(5, 1.0, 2.0, True, [(ukey(1), (1, "ada lovelace", 10, 5))])
    verdict = _check(history)
    assert [s.query for s in verdict.stale] == ["eq"]


def test_a_torn_read_is_no_snapshot() -> None:
    # one transaction writes both users; a read overlapping it sees both old or both new, never
    # one of each (PostgreSQL answers a statement from one snapshot)
    history = _history(
        ("in", (1, 2, 3), 1.5, 1.6, [[1, "ada", 0], [2, "bob", 0]]),
        ("in", (1, 2, 3), 1.5, 1.6, [[1, "al", 5], [2, "bo", 5]]),
        ("in", (1, 2, 3), 1.5, 1.6, [[1, "al", 5], [2, "bob", 0]]),  # torn
    )
    history.writes.add(
        5, 1.0, 2.0, True, [(ukey(1), (1, "al", 10, 5)), (ukey(2), (1, "bo", 20, 5))]
    )
    verdict = _check(history)
    assert len(verdict.stale) == 1
    assert verdict.stale[0].result == '[[1,"al",5],[2,"bob",0]]'
    assert verdict.unexplained == 1  # no state ever gave it


def test_snapshots_keep_the_commit_order_of_other_processes() -> None:
    # A (user 1) commits at 2.0, B (user 2) starts at 2.5: no snapshot has B without A
    history = _history(
        ("in", (1, 2, 3), 1.5, 3.5, [[1, "al", 5], [2, "bo", 6]]),
        ("in", (1, 2, 3), 1.5, 3.5, [[1, "al", 5], [2, "bob", 0]]),
        ("in", (1, 2, 3), 1.5, 3.5, [[1, "ada", 0], [2, "bo", 6]]),  # B without A
    )
    history.writes.add(5, 1.0, 2.0, True, [(ukey(1), (1, "al", 10, 5))])
    history.writes.add(6, 2.5, 3.0, True, [(ukey(2), (1, "bo", 20, 6))])
    verdict = _check(history)
    assert [s.result for s in verdict.stale] == ['[[1,"ada",0],[2,"bo",6]]']


def test_snapshots_keep_the_order_of_a_row_lock() -> None:
    # A writes users 1 and 3; B, begun before A committed, waited for user 1's lock: no snapshot
    # holds B without A, whatever the clocks say
    history = _history(
        ("in", (1, 2, 3), 1.2, 3.0, [[1, "b", 6], [2, "b", 6], [3, "a", 5]]),
        ("in", (1, 2, 3), 1.2, 3.0, [[1, "b", 6], [2, "b", 6]]),  # B without A
    )
    history.writes.add(5, 1.0, 2.0, True, [(ukey(1), (1, "a", 10, 5)), (ukey(3), (1, "a", 30, 5))])
    history.writes.add(6, 1.5, 2.5, True, [(ukey(1), (1, "b", 10, 6)), (ukey(2), (1, "b", 20, 6))])
    verdict = _check(history)
    assert [s.result for s in verdict.stale] == ['[[1,"b",6],[2,"b",6]]']


def test_a_rolled_back_or_future_write_is_never_explained() -> None:
    history = _history(
        ("post", (3,), 1.0, 1.1, ["x", "never", 77]),  # a row nobody wrote
        ("pk", (1,), 0.5, 0.6, [1, 1, "ada", 99, 5]),  # version 5 starts at 1.0
    )
    history.writes.add(5, 1.0, 2.0, True, [(ukey(1), (1, "ada", 99, 5))])
    verdict = _check(history)
    assert _stale_starts(verdict) == [1.0, 0.5]
    assert verdict.unexplained == 2


def test_joins_follow_both_tables() -> None:
    history = _history(
        ("join", (1,), 3.0, 3.1, [[7, "t", 5, "ada"]]),
        ("join", (1,), 3.0, 3.1, []),  # the post moved in at 2.0: stale
        ("join", (2,), 3.0, 3.1, []),
    )
    history.writes.add(5, 1.0, 2.0, True, [(pkey(7), (1, "t", 5))])
    verdict = _check(history)
    assert [(s.query, s.params) for s in verdict.stale] == [("join", (1,))]
    assert verdict.checked == 2  # join(2) never saw the post: nothing it had to reflect


def test_histories_survive_a_file(tmp_path: Path) -> None:
    history = _history(("pk", (1,), 3.0, 3.1, [1, 1, "ada", 10, 0]))
    history.writes.add(5, 1.0, 2.0, True, [(ukey(1), None)])
    history.barriers = [(1.0, 2.0)]
    history.save(tmp_path / "h.pickle")
    again = DbHistory.load(tmp_path / "h.pickle")
    assert again.barriers == [(1.0, 2.0)]
    assert _stale_starts(_check(again)) == [3.0]
