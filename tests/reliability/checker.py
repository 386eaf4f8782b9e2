"""The history-based staleness checker.

The source of truth holds one integer *version* per key; every write increments it and then
invalidates the key's dependency. The harness logs

* each write: ``(key, version, started, done)``: ``started`` is taken before the source of
  truth was written, ``done`` once the invalidation that follows it has returned;
* each read through a cached function: ``(key, start, end, version returned)``, in a *group*
  (one process, or one L1 domain);
* for groups whose L1 learns about invalidations by pub/sub from another process: when the
  announcement of a version was applied to that L1 (``seen``) and when the L1 was flushed.

The rule checked: a read that started after the invalidation following version ``v`` was
*visible* to its group must return a version ``>= v``. Visible means completed (``done``)
for every group; for an L1 fed by another process's announcements, also applied to that L1
(its announcement arrived, or the L1 was flushed afterwards: either way the L1 cannot serve
anything older). A read that overlaps an invalidation may return the older version: that is
counted (``old_but_allowed``) to show the races were exercised, not reported.

A read returning a version whose write had not even started before the read ended is
*impossible*: it means the harness (clocks, logs) is broken, and fails the check as well.

Timestamps are ``time.monotonic()``: CLOCK_MONOTONIC, one clock for every process on Linux.
All logs are compact arrays, so a million reads cost tens of megabytes, not gigabytes.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["History", "KeyWrites", "ReadLog", "SeenLog", "Verdict", "Visibility", "WriteLog"]


class ReadLog:
    """Reads of one thread or process: key, start, end, version returned."""

    def __init__(self) -> None:
        self.keys = array("i")
        self.starts = array("d")
        self.ends = array("d")
        self.versions = array("q")

    def add(self, key: int, start: float, end: float, version: int) -> None:
        """Log one read."""
        self.keys.append(key)
        self.starts.append(start)
        self.ends.append(end)
        self.versions.append(version)

    def extend(self, other: ReadLog) -> None:
        """Append every read of ``other``."""
        self.keys.extend(other.keys)
        self.starts.extend(other.starts)
        self.ends.extend(other.ends)
        self.versions.extend(other.versions)

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[tuple[int, float, float, int]]:
        return zip(self.keys, self.starts, self.ends, self.versions, strict=True)

    def dump(self) -> tuple[bytes, bytes, bytes, bytes]:
        """The arrays as bytes, to send between processes cheaply."""
        return (
            self.keys.tobytes(),
            self.starts.tobytes(),
            self.ends.tobytes(),
            self.versions.tobytes(),
        )

    @classmethod
    def load(cls, data: tuple[bytes, bytes, bytes, bytes]) -> ReadLog:
        """The log :meth:`dump` gave."""
        log = cls()
        log.keys.frombytes(data[0])
        log.starts.frombytes(data[1])
        log.ends.frombytes(data[2])
        log.versions.frombytes(data[3])
        return log


class WriteLog:
    """Writes: key, version written, time the write started, time its invalidation returned."""

    def __init__(self) -> None:
        self.keys = array("i")
        self.versions = array("q")
        self.starts = array("d")
        self.dones = array("d")

    def add(self, key: int, version: int, started: float, done: float) -> None:
        """Log one write followed by its invalidation."""
        self.keys.append(key)
        self.versions.append(version)
        self.starts.append(started)
        self.dones.append(done)

    def extend(self, other: WriteLog) -> None:
        """Append every write of ``other``."""
        self.keys.extend(other.keys)
        self.versions.extend(other.versions)
        self.starts.extend(other.starts)
        self.dones.extend(other.dones)

    def __len__(self) -> int:
        return len(self.keys)

    def dump(self) -> tuple[bytes, bytes, bytes, bytes]:
        """The arrays as bytes."""
        return (
            self.keys.tobytes(),
            self.versions.tobytes(),
            self.starts.tobytes(),
            self.dones.tobytes(),
        )

    @classmethod
    def load(cls, data: tuple[bytes, bytes, bytes, bytes]) -> WriteLog:
        """The log :meth:`dump` gave."""
        log = cls()
        log.keys.frombytes(data[0])
        log.versions.frombytes(data[1])
        log.starts.frombytes(data[2])
        log.dones.frombytes(data[3])
        return log


class SeenLog:
    """What one process's L1 learned from the invalidation channel, and when.

    ``seen``: the announcement of (key, version) was applied; ``flushes``: the L1 was flushed
    (on subscribing, on losing or regaining the subscription).
    """

    def __init__(self) -> None:
        self.keys = array("i")
        self.versions = array("q")
        self.ats = array("d")
        self.flushes = array("d")

    def see(self, key: int, version: int, at: float) -> None:
        """The announcement of ``version`` of ``key`` was applied at ``at``."""
        self.keys.append(key)
        self.versions.append(version)
        self.ats.append(at)

    def flushed(self, at: float) -> None:
        """The L1 was flushed at ``at``."""
        self.flushes.append(at)

    def dump(self) -> tuple[bytes, bytes, bytes, bytes]:
        """The arrays as bytes."""
        return (
            self.keys.tobytes(),
            self.versions.tobytes(),
            self.ats.tobytes(),
            self.flushes.tobytes(),
        )

    @classmethod
    def load(cls, data: tuple[bytes, bytes, bytes, bytes]) -> SeenLog:
        """The log :meth:`dump` gave."""
        log = cls()
        log.keys.frombytes(data[0])
        log.versions.frombytes(data[1])
        log.ats.frombytes(data[2])
        log.flushes.frombytes(data[3])
        return log


@dataclass
class StaleRead:
    """A read that returned a version older than one whose invalidation it had to see."""

    group: str
    key: int
    start: float
    end: float
    version: int
    required: int


@dataclass
class Verdict:
    """The outcome of a check, with the figures the reports show."""

    reads: int = 0
    writes: int = 0
    checked: int = 0  # reads that started after at least one visible invalidation of their key
    racing: int = 0  # reads that overlapped a write + invalidation of their key
    old_but_allowed: int = 0  # older than the truth at their start, but allowed (racing)
    stale: list[StaleRead] = field(default_factory=list)
    impossible: list[StaleRead] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """The counts, and up to five examples of each failure."""
        return {
            "reads": self.reads,
            "writes": self.writes,
            "checked_reads": self.checked,
            "racing_reads": self.racing,
            "old_but_allowed_reads": self.old_but_allowed,
            "stale_reads": len(self.stale),
            "impossible_reads": len(self.impossible),
            "stale_examples": [vars(s) for s in self.stale[:5]],
            "impossible_examples": [vars(s) for s in self.impossible[:5]],
        }


class KeyWrites:
    """One key's writes, sorted several ways for bisecting."""

    def __init__(self, writes: list[tuple[int, float, float]]) -> None:
        # (version, started, done)
        by_start = sorted(writes, key=lambda w: w[1])
        self.start_times = [w[1] for w in by_start]
        self.start_max = _running_max(w[0] for w in by_start)
        self.done_sorted = sorted(w[2] for w in writes)
        self.writes = writes

    def newest_started_before(self, t: float) -> int:
        """The highest version whose write started before ``t`` (0: none)."""
        i = bisect.bisect_left(self.start_times, t)
        return self.start_max[i - 1] if i else 0

    def overlapping(self, start: float, end: float) -> int:
        """How many writes' [started, done] intervals overlap [start, end]."""
        return bisect.bisect_left(self.start_times, end) - bisect.bisect_right(
            self.done_sorted, start
        )


class Visibility:
    """When each version of one key became visible to one group: sorted times, running max."""

    def __init__(self, visible: list[tuple[float, int]]) -> None:
        visible.sort()
        self.times = [t for t, _ in visible]
        self.newest = _running_max(v for _, v in visible)

    def required(self, start: float) -> int:
        """The newest version visible strictly before ``start`` (0: none)."""
        i = bisect.bisect_left(self.times, start)
        return self.newest[i - 1] if i else 0


def _running_max(values: Iterable[int]) -> list[int]:
    out: list[int] = []
    best = 0
    for v in values:
        best = max(best, v)
        out.append(best)
    return out


class History:
    """Every write and read of a run, and the check of the reads against the writes."""

    def __init__(self) -> None:
        self.writes = WriteLog()
        self.reads: dict[str, ReadLog] = {}
        self.seen: dict[str, SeenLog] = {}

    def add_reads(self, group: str, log: ReadLog) -> None:
        """Add reads made in ``group`` (a process or thread pool sharing one L1, or none)."""
        self.reads.setdefault(group, ReadLog()).extend(log)

    def add_seen(self, group: str, log: SeenLog) -> None:
        """Mark ``group`` as fed by announcements from elsewhere, as ``log`` records."""
        self.seen[group] = log

    def _visibility(self, per_key: dict[int, KeyWrites], group: str) -> dict[int, Visibility]:
        seen = self.seen.get(group)
        out: dict[int, Visibility] = {}
        for key, kw in per_key.items():
            if seen is None:
                out[key] = Visibility([(done, v) for v, _s, done in kw.writes])
                continue
            # announcement of version >= v applied: the L1 holds nothing older than v
            applied = sorted(
                (v, at)
                for k, v, at in zip(seen.keys, seen.versions, seen.ats, strict=True)
                if k == key
            )
            suffix_min: list[float] = [float("inf")] * (len(applied) + 1)
            for i in range(len(applied) - 1, -1, -1):
                suffix_min[i] = min(applied[i][1], suffix_min[i + 1])
            versions = [v for v, _ in applied]
            flushes = sorted(seen.flushes)
            visible = []
            for v, _s, done in kw.writes:
                learned = suffix_min[bisect.bisect_left(versions, v)]
                f = bisect.bisect_right(flushes, done)
                if f < len(flushes):
                    learned = min(learned, flushes[f])
                visible.append((max(done, learned), v))
            out[key] = Visibility(visible)
        return out

    def check(self) -> Verdict:
        """Check every read; return the figures and every stale or impossible read."""
        grouped: dict[int, list[tuple[int, float, float]]] = {}
        for key, version, started, done in zip(
            self.writes.keys,
            self.writes.versions,
            self.writes.starts,
            self.writes.dones,
            strict=True,
        ):
            grouped.setdefault(key, []).append((version, started, done))
        per_key = {key: KeyWrites(ws) for key, ws in grouped.items()}
        empty = KeyWrites([])
        verdict = Verdict(writes=len(self.writes))
        for group, log in self.reads.items():
            visibility = self._visibility(per_key, group)
            for key, start, end, version in log:
                verdict.reads += 1
                kw = per_key.get(key, empty)
                vis = visibility.get(key)
                required = vis.required(start) if vis is not None else 0
                if required:
                    verdict.checked += 1
                stale = version < required
                if stale:
                    verdict.stale.append(StaleRead(group, key, start, end, version, required))
                if version > kw.newest_started_before(end):
                    verdict.impossible.append(
                        StaleRead(group, key, start, end, version, kw.newest_started_before(end))
                    )
                if kw.overlapping(start, end) > 0:
                    verdict.racing += 1
                    if not stale and version < kw.newest_started_before(start):
                        verdict.old_but_allowed += 1
        return verdict
