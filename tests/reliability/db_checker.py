"""The history checker for cached reads of a database, with asynchronous (CDC) invalidation.

It extends the version rule of ``checker.py`` from one key to a query over many rows. Every row
has a history of versions (``db_workload.py``: a write sets the row's ``v`` while holding its
lock, so versions increase in commit order); version 0 is the seeded state. The harness logs

* each committed write transaction: its version, the rows it wrote with their new images
  (None: deleted), when it ``started`` (before its first statement), when its commit returned
  (``committed``), and whether it went through an instrumented engine (``tracked``) or was
  raw SQL that only CDC sees;
* each barrier of the CDC pipeline: ``(start, returned)``: it returned once everything
  committed before ``start`` was invalidated on every manager;
* each read through a cached function: its query and parameters, ``start``, ``end`` and the
  result it returned.

**When a write is visible.** A write through an instrumented engine is invalidated in the
writing process before its commit call returns: it is visible from ``committed``. A raw write
is invalidated when the change stream has passed it: it is visible from the return of the
first barrier that started after ``committed`` (that bounds the CDC delay from above; a write
is never visible earlier than it really was).

**The rule** (the issue's invariant, per write). A write *reaches* a query when the query can
see the change on one of its rows (``Query.relevant``: the old or the new image can appear in,
or change, the result; a user moving between two orgs a query does not read does not reach
it). A read over ``[start, end]`` is **fresh** when its result is exactly the query's result on
some *snapshot* that holds every write reaching the query that was visible before ``start``,
and nothing begun after ``end``. A snapshot is a set of write transactions PostgreSQL could have
committed before one statement began: with any transaction, every transaction that committed
before it (its commit returned before the other began, or it wrote one of the other's rows at an
earlier version, so the other waited for its lock). Every cached function runs one statement,
so a result computed afresh is a snapshot's; a cached one is an older snapshot's, which an
invalidation completed before the read began must have removed if the write reached it.
Otherwise the read is **stale**. A fresh read that no snapshot holding every reaching write
*committed* before ``start`` explains returned something older than committed data, which only
the invalidation window allows (CDC's delay, as the barriers bound it: a tracked write after a
raw one on the same row does not make the raw one due for the reads it does not reach): it is
counted **in the allowed window**.

A stale read is *explained* when the committed state at some earlier moment gives its result: a
real stale read, served from an old state. One that no committed state ever gave (a torn read
across a transaction, a rolled-back or future write) is counted *unexplained* as well: that is
a broken database, driver or harness.

The search enumerates the snapshots of the transactions that reach the query, not yet due, begun
before the read ended; a read with more than :data:`SEARCH_LIMIT` of them is counted
``undecided`` rather than guessed.
"""

from __future__ import annotations

import bisect
import math
import pickle
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability.checker import KeyWrites, Visibility
from tests.reliability.db_logs import DbReadLog, DbWriteLog, result_text
from tests.reliability.db_reads import Query
from tests.reliability.db_workload import Image

__all__ = ["DbHistory", "DbVerdict"]

Txn = tuple[float, float, frozenset[int], float]  # started, committed, rows written, visible

SEARCH_LIMIT = 4096  # states tried for one read, at most
MAX_TRANSACTIONS = 400  # transactions in flight around one read, at most
EXPLAIN_LIMIT = 50  # stale reads whose explanation is looked for
_ABSENT: Any = None


@dataclass
class DbStaleRead:
    """A read no allowed state explains."""

    group: str
    query: str
    params: tuple[Any, ...]
    start: float
    end: float
    result: str
    required: str  # the result on the state of the required versions
    explained_lag: float | None = None  # how long before its start a state gave its result


@dataclass
class DbVerdict:
    """The outcome of a check, with the figures the reports show."""

    reads: int = 0
    transactions: int = 0
    tracked_transactions: int = 0
    rows_written: int = 0
    barriers: int = 0
    checked: int = 0  # reads that at least one write visible before they began reached
    changed: int = 0  # reads whose result differs from the query's result on the seeded state
    racing: int = 0  # reads during which a write reaching them was under way (not yet due)
    in_window: int = 0  # fresh only thanks to the invalidation window (older than committed)
    undecided: int = 0  # too many states to try
    undecided_per_query: dict[str, int] = field(default_factory=dict)
    stale: list[DbStaleRead] = field(default_factory=list)
    unexplained: int = 0  # stale reads no earlier state explains (a broken harness)
    per_query: dict[str, int] = field(default_factory=dict)
    stale_per_query: dict[str, int] = field(default_factory=dict)
    raw_visibility_ms: list[float] = field(default_factory=list)  # commit to visible, raw writes

    def figures(self) -> dict[str, Any]:
        """The counts, and up to five examples of stale reads."""
        lags = sorted(self.raw_visibility_ms)

        def pct(p: float) -> float | None:
            return round(lags[min(len(lags) - 1, int(p * len(lags)))], 2) if lags else None

        return {
            "reads": self.reads,
            "transactions": self.transactions,
            "tracked_transactions": self.tracked_transactions,
            "raw_transactions": self.transactions - self.tracked_transactions,
            "rows_written": self.rows_written,
            "barriers": self.barriers,
            "checked_reads": self.checked,
            "changed_reads": self.changed,
            "racing_reads": self.racing,
            "in_window_reads": self.in_window,
            "undecided_reads": self.undecided,
            "undecided_per_query": dict(sorted(self.undecided_per_query.items())),
            "stale_reads": len(self.stale),
            "unexplained_reads": self.unexplained,
            "reads_per_query": dict(sorted(self.per_query.items())),
            "stale_per_query": dict(sorted(self.stale_per_query.items())),
            "raw_commit_to_visible_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
            "stale_examples": [vars(s) for s in self.stale[:5]],
        }


class _Row:
    """One row's history: versions in order, their images, and the times that bound them."""

    __slots__ = ("committed_at", "images", "started", "versions", "visible_at", "whole")

    def __init__(self, image: Image, writes: list[tuple[int, Image, float, float, float]]) -> None:
        # writes: (version, image, started, committed, visible)
        writes.sort(key=lambda w: w[0])
        self.versions = [0, *(w[0] for w in writes)]
        self.images: list[Image] = [image, *(w[1] for w in writes)]
        self.committed_at = [-math.inf, *(w[3] for w in writes)]
        self.visible_at = [-math.inf, *(w[4] for w in writes)]
        self.started = KeyWrites([(v, s, s) for v, _, s, _, _ in writes])
        #: what a query that sees all of the row sees change: every version
        self.whole = _Changes(self, self.images, range(1, len(self.versions)))

    def index(self, version: int) -> int:
        """The position of ``version`` in the history (the newest at most ``version``)."""
        return bisect.bisect_right(self.versions, version) - 1


class _Changes:
    """What one query sees of one row (``seen``: per version, its image or None when the query
    cannot see it) and the versions where that changes, by when they were committed and when
    they were visible."""

    __slots__ = ("committed", "indices", "order", "seen", "visible")

    def __init__(self, row: _Row, seen: Sequence[Image], indices: Iterable[int]) -> None:
        self.seen = seen
        self.order = list(indices)  # ascending
        self.indices = frozenset(self.order)
        self.committed = Visibility([(row.committed_at[i], i) for i in self.order])
        self.visible = Visibility(
            [(row.visible_at[i], i) for i in self.order if row.visible_at[i] < math.inf]
        )

    @classmethod
    def of(cls, row: _Row, key: int, query: Query, params: tuple[Any, ...]) -> _Changes:
        """The changes of ``row`` (``key``) that ``query`` with ``params`` sees."""
        relevant = query.relevant
        seen = [
            None if image is None or not relevant(key, image, params) else image
            for image in row.images
        ]
        if seen == row.images:
            return row.whole
        return cls(row, seen, (i for i in range(1, len(seen)) if seen[i] != seen[i - 1]))


class DbHistory:
    """Every write, barrier and read of a run, and the check of the reads."""

    def __init__(self, initial: Mapping[int, Image]) -> None:
        self.initial = dict(initial)
        self.writes = DbWriteLog()
        self.barriers: list[tuple[float, float]] = []
        self.reads: dict[str, DbReadLog] = {}

    def save(self, path: Path) -> None:
        """Write the whole history to ``path`` (to replay a failed check: :meth:`load`)."""
        reads = {group: log.dump() for group, log in self.reads.items()}
        path.write_bytes(pickle.dumps((self.initial, self.writes.dump(), self.barriers, reads)))

    @classmethod
    def load(cls, path: Path) -> DbHistory:
        """The history :meth:`save` wrote."""
        initial, writes, barriers, reads = pickle.loads(path.read_bytes())  # our own file
        history = cls(initial)
        history.writes = DbWriteLog.load(writes)
        history.barriers = barriers
        for group, log in reads.items():
            history.add_reads(group, DbReadLog.load(log))
        return history

    def add_reads(self, group: str, log: DbReadLog) -> None:
        """Add the reads of ``group`` (one process)."""
        if group in self.reads:
            raise ValueError(f"reads of {group!r} were added already")
        self.reads[group] = log

    # -- building
    def _visible_at(self, committed: float, tracked: bool) -> float:
        if tracked:
            return committed
        i = bisect.bisect_right(self._barrier_starts, committed)
        return self._barrier_ends[i] if i < len(self._barrier_ends) else math.inf

    def _rows(self, verdict: DbVerdict) -> dict[int, _Row]:
        barriers = sorted(self.barriers)
        self._barrier_starts = [b[0] for b in barriers]
        # a barrier returns once every earlier one did (they run one after the other); the
        # running minimum from the end keeps a later-starting barrier from counting earlier
        ends = [b[1] for b in barriers]
        for i in range(len(ends) - 2, -1, -1):
            ends[i] = min(ends[i], ends[i + 1])
        self._barrier_ends = ends
        per_row: dict[int, list[tuple[int, Image, float, float, float]]] = {}
        w = self.writes
        for version, started, committed, tracked, changes in zip(
            w.versions, w.starts, w.commits, w.tracked, w.changes, strict=True
        ):
            visible = self._visible_at(committed, bool(tracked))
            if not tracked and visible < math.inf:
                verdict.raw_visibility_ms.append((visible - committed) * 1000)
            seen: set[int] = set()
            for key, image in changes:
                if key in seen:
                    raise ValueError(f"transaction {version} logs row {key} twice")
                seen.add(key)
                per_row.setdefault(key, []).append((version, image, started, committed, visible))
        unknown = set(per_row) - set(self.initial)
        if unknown:
            raise ValueError(f"writes to rows the workload does not have: {sorted(unknown)[:5]}")
        return {key: _Row(image, per_row.get(key, [])) for key, image in self.initial.items()}

    # -- checking
    def check(self, queries: Mapping[str, Query]) -> DbVerdict:
        """Check every read against the history; the figures and every stale read."""
        verdict = DbVerdict(
            transactions=len(self.writes),
            tracked_transactions=sum(self.writes.tracked),
            rows_written=sum(len(c) for c in self.writes.changes),
            barriers=len(self.barriers),
        )
        rows = self._rows(verdict)
        w = self.writes
        txns = {
            version: (
                started,
                committed,
                frozenset(key for key, _ in changes),
                self._visible_at(committed, bool(tracked)),
            )
            for version, started, committed, tracked, changes in zip(
                w.versions, w.starts, w.commits, w.tracked, w.changes, strict=True
            )
        }
        seen: dict[tuple[str, tuple[Any, ...], int], _Changes] = {}
        seeded: dict[tuple[str, tuple[Any, ...]], str] = {}
        for group, log in self.reads.items():
            for name, params, start, end, result in log:
                query = queries[name]
                verdict.reads += 1
                verdict.per_query[name] = verdict.per_query.get(name, 0) + 1
                first = seeded.get((name, params))
                if first is None:
                    first = seeded[(name, params)] = result_text(
                        query.evaluate(self.initial, params)
                    )
                verdict.changed += result != first
                changes = []
                for key in query.keys(params):
                    found = seen.get((name, params, key))
                    if found is None:
                        found = seen[(name, params, key)] = _Changes.of(
                            rows[key], key, query, params
                        )
                    changes.append(found)
                read = _Read(rows, txns, changes, query, params, start, end, result)
                self._check_one(verdict, read, group)
        return verdict

    def _check_one(self, verdict: DbVerdict, read: _Read, group: str) -> None:
        verdict.checked += any(i > 0 for i in read.required)
        verdict.racing += read.racing()
        lows = [max(c, r) for c, r in zip(read.committed, read.required, strict=True)]
        found = read.search(lows)
        if found is False and lows != read.required:
            found = read.search(read.required)
            if found is True:
                verdict.in_window += 1
                return
        if found is True:
            return
        name = read.query.name
        if found is None:
            verdict.undecided += 1
            verdict.undecided_per_query[name] = verdict.undecided_per_query.get(name, 0) + 1
            return
        state = {
            key: read.rows[key].images[i] for key, i in zip(read.keys, read.required, strict=True)
        }
        stale = DbStaleRead(
            group,
            name,
            read.params,
            read.start,
            read.end,
            read.result,
            result_text(read.query.evaluate(state, read.params)),
        )
        verdict.stale.append(stale)
        verdict.stale_per_query[name] = verdict.stale_per_query.get(name, 0) + 1
        if len(verdict.stale) <= EXPLAIN_LIMIT:  # past it: counted, not examined
            stale.explained_lag = read.explain()
            verdict.unexplained += stale.explained_lag is None


class _Read:
    """One read being checked (see the module's docstring).

    Per row: ``required``, the newest version the query sees change that was visible before
    the read began (its write is in every snapshot tried, with every write before it on the
    row); ``committed``, the same among versions committed before it began; ``allowed``, the
    newest version begun before it ended. The writes enumerated are those between a row's low
    version and its allowed one that the query sees.
    """

    __slots__ = (
        "allowed", "changes", "committed", "end", "keys", "params", "query", "required",
        "result", "rows", "start", "txns",
    )  # fmt: skip

    def __init__(
        self,
        rows: Mapping[int, _Row],
        txns: Mapping[int, Txn],
        changes: Sequence[_Changes],
        query: Query,
        params: tuple[Any, ...],
        start: float,
        end: float,
        result: str,
    ) -> None:
        self.rows, self.txns, self.changes = rows, txns, changes
        self.query, self.params = query, params
        self.start, self.end, self.result = start, end, result
        self.keys = query.keys(params)
        self.required: list[int] = []
        self.committed: list[int] = []
        self.allowed: list[int] = []
        for key, seen in zip(self.keys, changes, strict=True):
            row = rows[key]
            self.required.append(seen.visible.required(start))
            self.committed.append(seen.committed.required(start))
            self.allowed.append(row.index(row.started.newest_started_before(end)))

    def racing(self) -> bool:
        """Whether a write the query sees was under way: begun before the read ended, not yet
        visible when it began."""
        for seen, low, high in zip(self.changes, self.required, self.allowed, strict=True):
            order = seen.order
            i = bisect.bisect_right(order, low)
            if i < len(order) and order[i] <= high:
                return True
        return False

    def _forced(self, lows: Sequence[int], candidates: set[int]) -> set[int]:
        """The ``candidates`` every snapshot tried holds: on each row, the write of its low
        version is in, and so is every write that committed before it (on the row, or whose
        commit returned before one of them began)."""
        oldest = min(candidates)
        forced: set[int] = set()
        latest_start = -math.inf
        for key, low in zip(self.keys, lows, strict=True):
            versions = self.rows[key].versions
            i = low
            while i > 0 and versions[i] >= oldest:
                forced.add(versions[i])
                latest_start = max(latest_start, self.txns[versions[i]][0])
                i -= 1
            if i > 0:  # the rest of the row is older than every candidate
                latest_start = max(latest_start, self.txns[versions[i]][0])
        return {v for v in candidates if v in forced or self.txns[v][1] < latest_start}

    def search(self, lows: Sequence[int], highs: Sequence[int] | None = None) -> bool | None:
        """Whether a snapshot holding each row's ``lows`` version (and what it implies), and
        nothing newer than its ``highs`` one (default: begun before the read ended), gives the
        result; None: more snapshots than :data:`SEARCH_LIMIT`."""
        fixed: dict[int, Image] = {}
        varying: list[tuple[int, Image, list[tuple[int, Image]]]] = []
        highs = self.allowed if highs is None else highs
        for key, seen, low, high in zip(self.keys, self.changes, lows, highs, strict=True):
            base = seen.seen[low]
            if low >= high:
                fixed[key] = base
                continue
            versions = self.rows[key].versions
            later = [(versions[i], seen.seen[i]) for i in range(low + 1, high + 1)]
            if all(image == base for _, image in later):
                fixed[key] = base
            else:
                varying.append((key, base, later))
        evaluate, params, result = self.query.evaluate, self.params, self.result
        if not varying:
            return result_text(evaluate(fixed, params)) == result
        candidates = {v for _, _, later in varying for v, _ in later}
        if len(candidates) > MAX_TRANSACTIONS:
            return None
        forced = self._forced(lows, candidates)
        order = sorted(candidates)  # by version: a snapshot holds a prefix of each row's
        for tried, snapshot in enumerate(_snapshots(order, self.txns, forced)):
            if tried >= SEARCH_LIMIT:
                return None
            state = dict(fixed)
            for key, base, later in varying:
                image = base
                for version, seen in later:  # in version (commit) order: the newest wins
                    if version in snapshot:
                        image = seen
                state[key] = image
            if result_text(evaluate(state, params)) == result:
                return True
        return False

    def explain(self) -> float | None:
        """How long before the read's start the rows were last in a state giving its result:
        a snapshot at that moment (every write whose commit had returned, maybe some under
        way); None: at no moment from the seeded state on."""
        moments = sorted(
            {
                row.committed_at[i]
                for key in self.keys
                for row in (self.rows[key],)
                for i in range(1, len(row.versions))
                if row.committed_at[i] < self.start
            },
            reverse=True,
        )
        for moment in [self.start, *moments, -math.inf]:
            lows, highs = [], []
            for key in self.keys:
                row = self.rows[key]
                lows.append(row.whole.committed.required(moment))
                highs.append(row.index(row.started.newest_started_before(moment)))
            if self.search(lows, [max(lo, hi) for lo, hi in zip(lows, highs, strict=True)]):
                return self.start - moment
        return None


def _snapshots(
    order: Sequence[int], txns: Mapping[int, Txn], forced: set[int]
) -> Iterator[set[int]]:
    """Every set of the transactions ``order`` (sorted by version) that a snapshot can hold,
    holding ``forced``: with B, every A that committed before B did (A's commit returned before
    B started, or A wrote one of B's rows at an earlier version: B waited for A's lock)."""
    chosen: set[int] = set()

    def walk(i: int, first_excluded_commit: float, blocked: frozenset[int]) -> Iterator[set[int]]:
        if i == len(order):
            yield chosen
            return
        version = order[i]
        started, committed, keys, _ = txns[version]
        if started <= first_excluded_commit and not keys & blocked:
            chosen.add(version)
            yield from walk(i + 1, first_excluded_commit, blocked)
            chosen.discard(version)
        if version not in forced:
            yield from walk(i + 1, min(first_excluded_commit, committed), blocked | keys)

    yield from walk(0, math.inf, frozenset())
