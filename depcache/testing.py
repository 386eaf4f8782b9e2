"""Helpers for the tests of applications that use depcache (and for depcache's own tests).

* :func:`reset_managers`: forget every registered manager and every in-memory store.
* :func:`memory_managers`: a context manager in which managers are in-memory and start empty.
* :func:`capture_events`: a context manager that records the :class:`~depcache.CacheEvent`
  objects depcache emits (hits, misses, stores, refusals, invalidations...).

With pytest, the ``memory_manager`` fixture (the ``depcache`` plugin, installed with depcache:
``depcache_pytest``) gives a test a fresh in-memory default manager::

    def test_profile_is_cached(memory_manager):
        with capture_events() as events:
            profile(1)
            profile(1)
        assert events.types() == ["miss", "set", "hit"]
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .backends.memory import MemoryStore
from .config import ConfigBase
from .events import CacheEvent, CacheEventType, observe_all, unobserve_all
from .manager import CacheManager
from .registry import get_or_create_cache_manager, registered_managers, reset_registry

__all__ = ["CapturedEvents", "capture_events", "memory_managers", "reset_managers"]


def reset_managers() -> None:
    """Forget every registered manager and every in-memory store, so tests start clean."""
    reset_registry()
    with MemoryStore._stores_lock:
        MemoryStore._stores.clear()


@contextmanager
def memory_managers(**settings: Any) -> Iterator[CacheManager]:
    """Within the block, the default manager (the one ``@cache_with_deps()`` uses without a
    name) is a fresh in-memory one, which it yields; managers made by name from the environment
    (``get_or_create_cache_manager(name)``) are in-memory too. ``settings`` are further
    :class:`~depcache.ConfigBase` settings (``single_flight=False``, ``l1_size=100``...).

    Every manager and in-memory store is forgotten before and after (:func:`reset_managers`),
    and ``DEP_CACHE_BACKEND`` is set to ``memory`` for the block (so nothing reaches Redis)."""
    reset_managers()
    previous = os.environ.get("DEP_CACHE_BACKEND")
    os.environ["DEP_CACHE_BACKEND"] = "memory"
    try:
        config = ConfigBase(**{"backend": "memory", **settings})
        manager = get_or_create_cache_manager(None, config=config)
        try:
            yield manager
        finally:
            for each in {manager, *registered_managers().values()}:
                each.close()
    finally:
        if previous is None:
            os.environ.pop("DEP_CACHE_BACKEND", None)
        else:
            os.environ["DEP_CACHE_BACKEND"] = previous
        reset_managers()


class CapturedEvents(list[CacheEvent]):
    """The events recorded by :func:`capture_events`, in the order they were emitted."""

    def types(self) -> list[str]:
        """The event types, as strings (``"hit"``, ``"miss"``, ``"set"``...)."""
        return [event.event_type.value for event in self]

    def of(self, event_type: CacheEventType | str) -> list[CacheEvent]:
        """The events of one type (a :class:`~depcache.CacheEventType` or its value)."""
        kind = CacheEventType(event_type)
        return [event for event in self if event.event_type is kind]


@contextmanager
def capture_events(manager: CacheManager | None = None) -> Iterator[CapturedEvents]:
    """Record the events depcache emits within the block: those of ``manager``, or of every
    manager of the process (those made within the block included). Each event's ``manager``
    names the manager that emitted it.

    Recording makes the managers' events active, as any callback does: hits are then served
    through the full cache flow (what metrics and tracing see too), not the plain fast path.
    """
    captured = CapturedEvents()
    record = captured.append
    if manager is None:
        observe_all(record)
    else:
        manager.events.on_all(record)
    try:
        yield captured
    finally:
        if manager is None:
            unobserve_all(record)
        else:
            manager.events.off_all(record)
