"""Committed writes: invalidation in this process, and hooks for everyone else (the bus).

When a transaction that wrote through an instrumented connection commits, depcache invalidates
what it wrote on every registered manager of this process (``depcache.invalidate``), then calls
every callback registered with :func:`on_committed_writes` with a :class:`CommittedWrites`.
``depcache_celery.publish_database_writes(app)`` registers one that publishes the dependencies
on the bus, so the managers of other processes and services hear of them; core depcache never
imports Celery.

Callbacks run in the committing thread, after the commit, in registration order; an exception
is logged and the next callback still runs (the commit cannot be undone). In asyncio code
(SQLAlchemy's ``AsyncEngine``) they run in a worker thread, never blocking the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import depcache

__all__ = [
    "CommittedWrites",
    "adeliver",
    "deliver",
    "on_committed_writes",
    "remove_committed_writes_hook",
]

logger = logging.getLogger("depcache.db")


@dataclass(frozen=True)
class CommittedWrites:
    """What one committed transaction invalidates: its ``dependencies`` (scheme names), on the
    database named ``database`` (an engine's URL without password, a Django alias)."""

    database: str
    dependencies: frozenset[str]


Callback = Callable[[CommittedWrites], None]
_callbacks: list[Callback] = []
_lock = threading.Lock()


def on_committed_writes(callback: Callback) -> Callback:
    """Call ``callback(writes)`` after every commit of an instrumented connection that wrote
    something; registering it twice is a no-op. Returns ``callback`` (usable as a decorator).

    Raises:
        TypeError: ``callback`` is not callable.
    """
    if not callable(callback):
        raise TypeError(f"on_committed_writes() needs a callable, got {callback!r}")
    with _lock:
        if callback not in _callbacks:
            _callbacks.append(callback)
    return callback


def remove_committed_writes_hook(callback: Callback) -> bool:
    """Unregister ``callback``; True when it was registered."""
    with _lock:
        if callback in _callbacks:
            _callbacks.remove(callback)
            return True
        return False


def _run_callbacks(writes: CommittedWrites) -> None:
    with _lock:
        callbacks = list(_callbacks)
    for callback in callbacks:
        try:
            callback(writes)
        except Exception:
            logger.exception("depcache.db: a committed-writes callback failed")


def deliver(writes: CommittedWrites) -> None:
    """Invalidate ``writes`` on every manager of this process, then run the callbacks. Errors
    are logged, never raised: the transaction is committed whatever happens here."""
    if not writes.dependencies:
        return
    try:
        depcache.invalidate(*sorted(writes.dependencies))
    except Exception:
        logger.exception(
            "depcache.db: invalidating %d dependencies after a commit on %s failed",
            len(writes.dependencies),
            writes.database,
        )
    _run_callbacks(writes)


async def adeliver(writes: CommittedWrites) -> None:
    """:func:`deliver` for asyncio: the async backends, and callbacks in a worker thread."""
    if not writes.dependencies:
        return
    try:
        await depcache.ainvalidate(*sorted(writes.dependencies))
    except Exception:
        logger.exception(
            "depcache.db: invalidating %d dependencies after a commit on %s failed",
            len(writes.dependencies),
            writes.database,
        )
    with _lock:
        pending = bool(_callbacks)
    if pending:
        await asyncio.to_thread(_run_callbacks, writes)
