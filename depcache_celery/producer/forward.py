"""Handing a manager's local invalidations to the worker, for deployments this process cannot
reach.

::

    cache = depcache.get_or_create_cache_manager("users")
    depcache_celery.forward_invalidations(cache, app=celery_app)

From then on every ``cache.invalidate_dependency(...)`` (and :func:`depcache.invalidate`) that
this process makes also sends the ``depcache.invalidate`` task with the same dependencies, so
the worker applies them on every manager it has registered (or the ``managers`` named here).

No loops: invalidations the worker makes while fanning an event out (:func:`fanout.apply
<depcache_celery.worker.fanout.apply>`) are never forwarded, even when the worker's process has a
forwarding manager; and a replayed or duplicated task is harmless, since invalidating twice
removes nothing more. A send that fails is logged at ERROR (the local invalidation has
happened); inside a transaction the send waits for the commit; in async code it runs in a
thread, never blocking the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence

from celery import Celery

import depcache

from ..worker.fanout import in_fanout
from .deferral import try_defer
from .emit import invalidate_later

__all__ = ["forward_invalidations"]

logger = logging.getLogger(__name__)

_ATTR = "_depcache_celery_forwarder"
_lock = threading.Lock()


def forward_invalidations(
    manager: depcache.CacheManager,
    *,
    app: Celery | None = None,
    managers: Sequence[str] | None = None,
) -> Callable[[], None]:
    """Also send ``manager``'s invalidations to the worker (see the module's docstring).

    ``app``: the Celery app to send with (default: the current app at send time). ``managers``:
    the names the worker invalidates on (default: all it has). Returns a function that stops
    forwarding. Forwarding an already-forwarded manager raises ``ValueError``.
    """
    names = list(managers) if managers is not None else None
    if names is not None and any(not isinstance(n, str) or not n for n in names):
        raise ValueError(f"managers must be non-empty names, got {managers!r}")

    def send(deps: list[str]) -> None:
        try:
            invalidate_later(*deps, managers=names, app=app)
        except Exception:
            logger.exception(
                "depcache_celery: could not forward the invalidation of %s to the worker", deps
            )

    def forward(event: depcache.CacheEvent) -> Awaitable[None] | None:
        if in_fanout() or not event.dependencies:
            return None
        job = functools.partial(send, sorted(event.dependencies))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            job()
            return None
        if try_defer(job):  # decided here, in the caller's context
            return None
        return loop.run_in_executor(None, job)  # never block the event loop

    with _lock:
        if getattr(manager, _ATTR, None) is not None:
            raise ValueError(f"the invalidations of {manager!r} are already forwarded")
        setattr(manager, _ATTR, forward)
    manager.on_event(depcache.CacheEventType.INVALIDATE, forward)

    def stop() -> None:
        with _lock:
            if getattr(manager, _ATTR, None) is forward:
                manager.events.off(depcache.CacheEventType.INVALIDATE, forward)
                setattr(manager, _ATTR, None)

    return stop
