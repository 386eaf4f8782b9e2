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

**The rule.** For a read over ``[start, end]`` and each row it may depend on
(``Query.keys``), the row's *required* version is the newest one visible before ``start``, and
its *allowed* versions go up to the newest one whose write had begun before ``end``. The read is
**fresh** when some *snapshot* gives exactly its result with every row at least at its required
version, as far as the query can see the row (``Query.relevant``: a row that changed in a way
the query cannot see, such as a user moving between two other orgs, may be older), and at most
at its allowed version. A snapshot is a set of write transactions PostgreSQL could have
committed before one statement began: with any transaction, every transaction that committed
before it (its commit returned before the other began, or it wrote one of the other's rows at an
earlier version, so the other waited for its lock). Every cached function runs one statement,
so a result computed afresh is a snapshot's; a cached one is an older snapshot's, and must not
be older than an invalidation that completed before the read began. Otherwise the read is
**stale**. A fresh read that needs some row older than its version *committed* before
``start`` returned something older than committed data, which only the invalidation window
(CDC's delay, bounded by the barriers) allows: it is counted **in the allowed window**.

A stale read is *explained* when the committed state at some earlier moment gives its result: a
real stale read, served from an old state. One that no committed state ever gave (a torn read
across a transaction, a rolled-back or future write) is counted *unexplained* as well: that is
a broken database, driver or harness.

The search enumerates the snapshots of the transactions that wrote, between a row's required
and allowed versions, something the query can see; a read with more than :data:`SEARCH_LIMIT`
of them is counted ``undecided`` rather than guessed.
"""

from __future__ import annotations

import bisect
import math
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability.checker import KeyWrites, Visibility
from tests.reliability.db_logs import DbReadLog, DbWriteLog, result_text
from tests.reliability.db_reads import Query
from tests.reliability.db_workload import Image

__all__ = ["DbHistory", "DbVerdict"]

Txn = tuple[float, float, frozenset[int]]  # started, committed, rows written

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
    checked: int = 0  # reads that had to see at least one write (a row's required version > 0)
    changed: int = 0  # reads whose result differs from the query's result on the seeded state
    racing: int = 0  # reads during which a row they may depend on was being written
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

    __slots__ = ("committed", "images", "started", "versions", "visible")

    def __init__(self, image: Image, writes: list[tuple[int, Image, float, float, float]]) -> None:
        # writes: (version, image, started, committed, visible)
        writes.sort(key=lambda w: w[0])
        self.versions = [0, *(w[0] for w in writes)]
        self.images: list[Image] = [image, *(w[1] for w in writes)]
        self.started = KeyWrites([(v, s, s) for v, _, s, _, _ in writes])
        self.committed = Visibility([(c, v) for v, _, _, c, _ in writes])
        self.visible = Visibility([(vis, v) for v, _, _, _, vis in writes if vis < math.inf])

    def index(self, version: int) -> int:
        """The position of ``version`` in the history (the newest at most ``version``)."""
        return bisect.bisect_right(self.versions, version) - 1


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
            version: (started, committed, frozenset(key for key, _ in changes))
            for version, started, committed, changes in zip(
                w.versions, w.starts, w.commits, w.changes, strict=True
            )
        }
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
                read = _Read(rows, txns, query, params, start, end, result)
                self._check_one(verdict, read, group)
        return verdict

    def _check_one(self, verdict: DbVerdict, read: _Read, group: str) -> None:
        verdict.checked += any(i > 0 for i in read.required)
        verdict.racing += any(a > r for r, a in zip(read.required, read.allowed, strict=True))
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
    """One read being checked: its rows' bounds, and the search for a snapshot giving its
    result (see the module's docstring).

    Only transactions that wrote one of the read's rows, between the row's low version and the
    newest one begun before the read ended, in a way the query can see, are enumerated; each
    row's low version is in every snapshot tried, anything newer than its allowed one in none.
    """

    __slots__ = (
        "allowed", "committed", "end", "keys", "params", "query", "required", "result",
        "rows", "start", "txns",
    )  # fmt: skip

    def __init__(
        self,
        rows: Mapping[int, _Row],
        txns: Mapping[int, Txn],
        query: Query,
        params: tuple[Any, ...],
        start: float,
        end: float,
        result: str,
    ) -> None:
        self.rows, self.txns, self.query, self.params = rows, txns, query, params
        self.start, self.end, self.result = start, end, result
        self.keys = query.keys(params)
        self.required: list[int] = []  # per key: index of the newest version visible at start
        self.committed: list[int] = []  # ... committed before start
        self.allowed: list[int] = []  # ... whose write started before end
        for key in self.keys:
            row = rows[key]
            self.required.append(row.index(row.visible.required(start)))
            self.committed.append(row.index(row.committed.required(start)))
            self.allowed.append(row.index(row.started.newest_started_before(end)))

    def _seen(self, key: int, image: Image) -> Image:
        """What the query sees of a row: its image, or absent when it cannot matter."""
        if image is None or not self.query.relevant(key, image, self.params):
            return _ABSENT
        return image

    def _split(
        self, lows: Sequence[int]
    ) -> tuple[dict[int, Image], list[tuple[int, Image, list[tuple[int, Image]]]]]:
        """Rows the query sees in one state only (fixed), and the others with their base
        (low) state and their later versions."""
        fixed: dict[int, Image] = {}
        varying: list[tuple[int, Image, list[tuple[int, Image]]]] = []
        for key, low, high in zip(self.keys, lows, self.allowed, strict=True):
            row = self.rows[key]
            base = self._seen(key, row.images[low])
            later = [
                (row.versions[i], self._seen(key, row.images[i])) for i in range(low + 1, high + 1)
            ]
            if all(seen == base for _, seen in later):
                fixed[key] = base
            else:
                varying.append((key, base, later))
        return fixed, varying

    def search(self, lows: Sequence[int]) -> bool | None:
        """Whether a snapshot with every row at least at its ``lows`` version (by what the
        query sees of it) gives the result; None: more snapshots than :data:`SEARCH_LIMIT`."""
        fixed, varying = self._split(lows)
        evaluate, params, result = self.query.evaluate, self.params, self.result
        if not varying:
            return result_text(evaluate(fixed, params)) == result
        candidates = {v for _, _, later in varying for v, _ in later}
        if len(candidates) > MAX_TRANSACTIONS:
            return None
        order = sorted(candidates)  # by version: a snapshot holds a prefix of each row's
        for tried, snapshot in enumerate(_snapshots(order, self.txns)):
            if tried >= SEARCH_LIMIT:
                return None
            state = dict(fixed)
            for key, base, later in varying:
                seen = base
                for version, image in later:  # in version (commit) order: the newest wins
                    if version in snapshot:
                        seen = image
                state[key] = seen
            if result_text(evaluate(state, params)) == result:
                return True
        return False

    def explain(self) -> float | None:
        """How long before the read's start the rows were last in a state giving its result
        (a committed state: every transaction whose commit had returned); None: in none,
        from the seeded state on."""
        moments = sorted(
            {t for key in self.keys for t in self.rows[key].committed.times if t < self.start},
            reverse=True,
        )
        for moment in [self.start, *moments]:
            state = {}
            for key in self.keys:
                row = self.rows[key]
                state[key] = self._seen(key, row.images[row.index(row.committed.required(moment))])
            if result_text(self.query.evaluate(state, self.params)) == self.result:
                return self.start - moment
        state = {key: self._seen(key, self.rows[key].images[0]) for key in self.keys}
        if result_text(self.query.evaluate(state, self.params)) == self.result:
            return math.inf
        return None


def _snapshots(order: Sequence[int], txns: Mapping[int, Txn]) -> Iterator[set[int]]:
    """Every set of the transactions ``order`` (sorted by version) that a snapshot can hold:
    with B, every A that committed before B did: A's commit returned before B started, or A
    wrote one of B's rows at an earlier version (B waited for A's lock)."""
    chosen: set[int] = set()

    def walk(i: int, first_excluded_commit: float, blocked: frozenset[int]) -> Iterator[set[int]]:
        if i == len(order):
            yield chosen
            return
        version = order[i]
        started, committed, keys = txns[version]
        if started <= first_excluded_commit and not keys & blocked:
            chosen.add(version)
            yield from walk(i + 1, first_excluded_commit, blocked)
            chosen.discard(version)
        yield from walk(i + 1, min(first_excluded_commit, committed), blocked | keys)

    yield from walk(0, math.inf, frozenset())
