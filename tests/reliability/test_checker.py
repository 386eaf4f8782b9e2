"""The checker itself, on hand-written histories: it flags what it must and only that."""

from __future__ import annotations

from tests.reliability.checker import History, ReadLog, SeenLog


def _history(*reads: tuple[int, float, float, int], group: str = "g") -> History:
    history = History()
    # key 0: version 1 written at 1.0, invalidated by 2.0; version 2 written at 5.0, done 6.0
    history.writes.add(0, 1, 1.0, 2.0)
    history.writes.add(0, 2, 5.0, 6.0)
    log = ReadLog()
    for read in reads:
        log.add(*read)
    history.add_reads(group, log)
    return history


def test_a_read_after_a_completed_invalidation_must_see_it() -> None:
    verdict = _history((0, 3.0, 3.1, 0), (0, 7.0, 7.1, 1)).check()
    assert [(s.start, s.version, s.required) for s in verdict.stale] == [(3.0, 0, 1), (7.0, 1, 2)]


def test_reads_overlapping_an_invalidation_may_return_the_old_version() -> None:
    verdict = _history((0, 1.5, 2.5, 0), (0, 5.5, 6.5, 1), (0, 6.5, 6.6, 2)).check()
    assert verdict.stale == []
    assert verdict.racing == 2
    assert verdict.old_but_allowed == 2  # both: the write they overlap began before them
    assert verdict.checked == 2  # the first began before version 1 was invalidated


def test_a_version_not_yet_written_is_impossible() -> None:
    verdict = _history((0, 0.1, 0.2, 1), (0, 3.0, 3.1, 3)).check()
    assert [(s.start, s.version) for s in verdict.impossible] == [(0.1, 1), (3.0, 3)]


def test_other_keys_are_independent() -> None:
    verdict = _history((1, 7.0, 7.1, 0)).check()
    assert verdict.stale == []
    assert verdict.checked == 0


def test_an_l1_fed_by_announcements_is_checked_from_when_it_learned() -> None:
    reads = ((0, 2.5, 2.6, 0), (0, 3.5, 3.6, 0), (0, 6.5, 6.6, 1), (0, 8.5, 8.6, 1))
    history = _history(*reads)
    seen = SeenLog()
    seen.see(0, 1, 3.0)  # the announcement of version 1 reached this L1 at 3.0
    seen.flushed(8.0)  # version 2's never came, but the L1 was flushed at 8.0
    history.add_seen("g", seen)
    verdict = history.check()
    # 2.5: before the L1 learned (allowed); 3.5: after (stale); 6.5: before the flush
    # (allowed); 8.5: after the flush (stale)
    assert [(s.start, s.required) for s in verdict.stale] == [(3.5, 1), (8.5, 2)]


def test_logs_survive_the_trip_between_processes() -> None:
    log = ReadLog()
    log.add(3, 1.25, 1.5, 7)
    assert list(ReadLog.load(log.dump())) == [(3, 1.25, 1.5, 7)]
