"""Helpers for tests of applications that use depcache (and for depcache's own tests)."""

from __future__ import annotations

from .backends.memory import MemoryStore
from .registry import reset_registry

__all__ = ["reset_managers"]


def reset_managers() -> None:
    """Forget every registered manager and every in-memory store, so tests start clean."""
    reset_registry()
    with MemoryStore._stores_lock:
        MemoryStore._stores.clear()
