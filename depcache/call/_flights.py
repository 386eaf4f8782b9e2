"""Single flight: concurrent misses of one key in this process compute once.

After a miss, the first call of a key (the leader) computes it; calls that miss the same key
at the same epoch meanwhile (followers) wait for the leader's outcome and share it, value or
exception, instead of stampeding the function and the backend. Flights are keyed by
``(key, epoch)``: a call whose lookup saw a newer epoch (an invalidation happened after the
leader's lookup) never shares the leader's older result. If the leader is cancelled or
interrupted, its followers compute for themselves. Threads share flights per manager; asyncio
tasks share them per event loop. A follower waits at most ``FOLLOW_TIMEOUT`` seconds, then
computes itself (so two calls that wait on each other cannot deadlock).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FOLLOW_TIMEOUT", "AsyncFlights", "Outcome", "SyncFlights"]

FOLLOW_TIMEOUT = 30.0

#: (ok, value or exception, dependencies by manager); None: the leader gave up, start over.
Outcome = tuple[bool, Any, Mapping[str, Iterable[str]]] | None


class _Flight:
    __slots__ = ("event", "outcome")

    def __init__(self) -> None:
        self.event: threading.Event | None = None  # made by the first follower only
        self.outcome: Outcome = None


class SyncFlights:
    """The flights of threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Any, _Flight] = {}

    def lead_or_follow(self, key: Any) -> tuple[_Flight, threading.Event | None]:
        """Become the leader of ``key`` (event None) or get the leader's flight and event."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
                return flight, None
            if flight.event is None:
                flight.event = threading.Event()
            return flight, flight.event

    def land(self, key: Any, flight: _Flight, outcome: Outcome) -> None:
        """Publish the leader's outcome and wake the followers."""
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.outcome = outcome
            event = flight.event
        if event is not None:
            event.set()


class AsyncFlights:
    """The flights of asyncio tasks, one table per event loop."""

    def __init__(self) -> None:
        self._tables: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[Any, asyncio.Future[Outcome] | None]
        ] = weakref.WeakKeyDictionary()

    def _table(self) -> dict[Any, asyncio.Future[Outcome] | None]:
        loop = asyncio.get_running_loop()
        table = self._tables.get(loop)
        if table is None:
            table = self._tables[loop] = {}
        return table

    def lead_or_follow(self, key: Any) -> asyncio.Future[Outcome] | None:
        """None: lead ``key``. Otherwise the future of the leader's outcome."""
        table = self._table()
        if key not in table:
            table[key] = None
            return None
        future = table[key]
        if future is None:
            future = table[key] = asyncio.get_running_loop().create_future()
        return future

    def land(self, key: Any, outcome: Outcome) -> None:
        """Publish the leader's outcome to the followers."""
        future = self._table().pop(key, None)
        if future is not None and not future.done():
            future.set_result(outcome)
