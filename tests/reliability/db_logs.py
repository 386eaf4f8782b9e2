"""The logs of the database staleness checker: compact arrays, sent between processes as
bytes (a run logs hundreds of thousands of reads)."""

from __future__ import annotations

import json
import pickle
from array import array
from collections.abc import Iterator
from typing import Any

from tests.reliability.db_workload import Change

__all__ = ["DbReadLog", "DbWriteLog", "result_text"]


def result_text(result: Any) -> str:
    """The canonical text of a result (what reads log and evaluations are compared by)."""
    return json.dumps(result, separators=(",", ":"))


class DbWriteLog:
    """Committed write transactions of one process, and the rows each wrote."""

    def __init__(self) -> None:
        self.versions = array("q")
        self.starts = array("d")
        self.commits = array("d")
        self.tracked = array("b")
        self.changes: list[list[Change]] = []

    def add(
        self, version: int, started: float, committed: float, tracked: bool, changes: list[Change]
    ) -> None:
        """Log one committed transaction."""
        self.versions.append(version)
        self.starts.append(started)
        self.commits.append(committed)
        self.tracked.append(int(tracked))
        self.changes.append(changes)

    def extend(self, other: DbWriteLog) -> None:
        """Append every transaction of ``other``."""
        self.versions.extend(other.versions)
        self.starts.extend(other.starts)
        self.commits.extend(other.commits)
        self.tracked.extend(other.tracked)
        self.changes.extend(other.changes)

    def __len__(self) -> int:
        return len(self.versions)

    def dump(self) -> bytes:
        """The log as bytes, to send between processes."""
        return pickle.dumps(
            (
                self.versions.tobytes(),
                self.starts.tobytes(),
                self.commits.tobytes(),
                self.tracked.tobytes(),
                self.changes,
            )
        )

    @classmethod
    def load(cls, data: bytes) -> DbWriteLog:
        """The log :meth:`dump` gave."""
        versions, starts, commits, tracked, changes = pickle.loads(data)  # our own
        log = cls()
        log.versions.frombytes(versions)
        log.starts.frombytes(starts)
        log.commits.frombytes(commits)
        log.tracked.frombytes(tracked)
        log.changes = changes
        return log


class DbReadLog:
    """Reads of one process: query, parameters, start, end, result (parameters and results
    interned, since reads repeat them)."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.params: list[tuple[Any, ...]] = []
        self.results: list[str] = []
        self._interned: dict[Any, int] = {}
        self.query_ids = array("i")
        self.param_ids = array("i")
        self.result_ids = array("i")
        self.starts = array("d")
        self.ends = array("d")

    def _intern(self, table: list[Any], kind: str, value: Any) -> int:
        key = (kind, value)
        found = self._interned.get(key)
        if found is None:
            found = self._interned[key] = len(table)
            table.append(value)
        return found

    def add(
        self, query: str, params: tuple[Any, ...], start: float, end: float, result: Any
    ) -> None:
        """Log one read."""
        self.query_ids.append(self._intern(self.queries, "q", query))
        self.param_ids.append(self._intern(self.params, "p", params))
        self.result_ids.append(self._intern(self.results, "r", result_text(result)))
        self.starts.append(start)
        self.ends.append(end)

    def __len__(self) -> int:
        return len(self.starts)

    def __iter__(self) -> Iterator[tuple[str, tuple[Any, ...], float, float, str]]:
        for q, p, r, s, e in zip(
            self.query_ids, self.param_ids, self.result_ids, self.starts, self.ends, strict=True
        ):
            yield self.queries[q], self.params[p], s, e, self.results[r]

    def dump(self) -> bytes:
        """The log as bytes."""
        arrays = (self.query_ids, self.param_ids, self.result_ids, self.starts, self.ends)
        return pickle.dumps(
            (self.queries, self.params, self.results, [a.tobytes() for a in arrays])
        )

    @classmethod
    def load(cls, data: bytes) -> DbReadLog:
        """The log :meth:`dump` gave."""
        queries, params, results, arrays = pickle.loads(data)  # our own logs
        log = cls()
        log.queries, log.params, log.results = queries, params, results
        for target, raw in zip(
            (log.query_ids, log.param_ids, log.result_ids, log.starts, log.ends),
            arrays,
            strict=True,
        ):
            target.frombytes(raw)
        return log
