"""Local cache events: what a manager tells the callbacks registered on it.

Callbacks receive a :class:`CacheEvent`. Sync operations run sync callbacks; async operations
run sync callbacks and await async ones (an async callback cannot run from a sync operation
and is skipped there with a log line). A failing callback is logged (unless
``callback_error_silent``) and never breaks the cache operation.

:func:`observe_all` registers a callback on every manager of the process, those made later
included (what :mod:`depcache.observe` uses for metrics and tracing); events then carry their
manager's name.
"""

from __future__ import annotations

import inspect
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

__all__ = [
    "CacheCallback",
    "CacheEvent",
    "CacheEventType",
    "EventEmitter",
    "StatsCollector",
    "observe_all",
    "unobserve_all",
]

logger = logging.getLogger("depcache")


class CacheEventType(Enum):
    """Kinds of cache events."""

    HIT = "hit"
    MISS = "miss"
    SET = "set"
    DELETE = "delete"
    INVALIDATE = "invalidate"
    CLEAR = "clear"
    REFUSED = "refused"
    """A decorated call's result was not stored: a dependency was invalidated meanwhile."""
    ERROR = "error"
    """A backend or serialization error in a decorated call (``value`` is the error), raised
    or, with ``silent_backend_errors``, logged."""


@dataclass
class CacheEvent:
    """One cache event. ``key`` is the entry key, or the dependency for INVALIDATE."""

    event_type: CacheEventType
    key: str
    timestamp: float = field(default_factory=time.time)
    value: Any = None
    dependencies: set[str] | None = None
    ttl: float | None = None
    count: int | None = None
    manager: str | None = None
    """The name of the manager the event is about (set when dispatched)."""


CacheCallback = Callable[[CacheEvent], Any]

_observers: list[CacheCallback] = []
_emitters: weakref.WeakSet[EventEmitter] = weakref.WeakSet()


def observe_all(callback: CacheCallback) -> None:
    """Call ``callback`` (sync) on every event of every manager of the process, those made
    later included, after the manager's own callbacks."""
    if callback not in _observers:
        _observers.append(callback)
    for emitter in list(_emitters):
        emitter._refresh()


def unobserve_all(callback: CacheCallback) -> bool:
    """Remove a callback added with :func:`observe_all`; return whether it was there."""
    found = callback in _observers
    if found:
        _observers.remove(callback)
    for emitter in list(_emitters):
        emitter._refresh()
    return found


class EventEmitter:
    """Callbacks by event type; ``active`` is False while none is registered (fast path).
    ``name`` is the manager's, given to the events it dispatches."""

    def __init__(self, silent: bool = False, name: str | None = None) -> None:
        self.silent = silent
        self.name = name
        self._callbacks: dict[CacheEventType, list[CacheCallback]] = {t: [] for t in CacheEventType}
        self._global: list[CacheCallback] = []
        self.active = bool(_observers)
        _emitters.add(self)

    def _refresh(self) -> None:
        self.active = bool(self._global or _observers) or any(self._callbacks.values())

    def on(self, event_type: CacheEventType, callback: CacheCallback) -> None:
        """Call ``callback`` on every event of ``event_type``."""
        self._callbacks[event_type].append(callback)
        self._refresh()

    def on_all(self, callback: CacheCallback) -> None:
        """Call ``callback`` on every event."""
        self._global.append(callback)
        self._refresh()

    def off(self, event_type: CacheEventType, callback: CacheCallback) -> bool:
        """Remove a callback registered with :meth:`on`; return whether it was there."""
        found = callback in self._callbacks[event_type]
        if found:
            self._callbacks[event_type].remove(callback)
        self._refresh()
        return found

    def off_all(self, callback: CacheCallback) -> bool:
        """Remove a callback registered with :meth:`on_all`; return whether it was there."""
        found = callback in self._global
        if found:
            self._global.remove(callback)
        self._refresh()
        return found

    def clear(self) -> None:
        """Remove every callback."""
        for callbacks in self._callbacks.values():
            callbacks.clear()
        self._global.clear()
        self._refresh()

    def _targets(self, event_type: CacheEventType) -> Iterator[CacheCallback]:
        yield from self._callbacks[event_type]
        yield from self._global
        yield from _observers

    def _failed(self, callback: CacheCallback) -> None:
        if not self.silent:
            logger.exception("depcache event callback %r failed", callback)

    def emit(self, event: CacheEvent) -> None:
        """Run the sync callbacks for ``event``."""
        if event.manager is None:
            event.manager = self.name
        for callback in self._targets(event.event_type):
            if inspect.iscoroutinefunction(callback):
                logger.warning(
                    "async callback %r skipped: %s came from a sync operation",
                    callback,
                    event.event_type.value,
                )
                continue
            try:
                callback(event)
            except Exception:
                self._failed(callback)

    async def aemit(self, event: CacheEvent) -> None:
        """Run the sync callbacks and await the async ones for ``event``."""
        if event.manager is None:
            event.manager = self.name
        for callback in self._targets(event.event_type):
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self._failed(callback)


class StatsCollector:
    """A callback that counts events: register it with ``manager.on_all_events(stats)``."""

    _FIELDS: ClassVar[dict[CacheEventType, str]] = {
        CacheEventType.HIT: "hits",
        CacheEventType.MISS: "misses",
        CacheEventType.SET: "sets",
        CacheEventType.DELETE: "deletes",
        CacheEventType.INVALIDATE: "invalidations",
        CacheEventType.CLEAR: "clears",
        CacheEventType.REFUSED: "refused",
        CacheEventType.ERROR: "errors",
    }

    def __init__(self) -> None:
        self.stats: dict[str, int] = dict.fromkeys(self._FIELDS.values(), 0)
        self.start_time = time.time()

    def __call__(self, event: CacheEvent) -> None:
        """Count ``event`` (bulk events count their entries)."""
        bulk = event.event_type in (
            CacheEventType.DELETE,
            CacheEventType.INVALIDATE,
            CacheEventType.CLEAR,
        )
        self.stats[self._FIELDS[event.event_type]] += (event.count or 1) if bulk else 1

    def get_hit_ratio(self) -> float:
        """Hits divided by lookups (0.0 before any lookup)."""
        total = self.stats["hits"] + self.stats["misses"]
        return self.stats["hits"] / total if total else 0.0

    def get_stats(self) -> dict[str, Any]:
        """The counts plus hit ratio, total, runtime and operations per second."""
        runtime = time.time() - self.start_time
        total = sum(self.stats.values())
        return {
            **self.stats,
            "hit_ratio": self.get_hit_ratio(),
            "total_operations": total,
            "runtime_seconds": runtime,
            "ops_per_second": total / runtime if runtime > 0 else 0.0,
        }

    def reset(self) -> None:
        """Zero the counts and restart the clock."""
        for name in self.stats:
            self.stats[name] = 0
        self.start_time = time.time()
