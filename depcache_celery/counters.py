"""Counters of what the worker did, per process: read them with :func:`snapshot`.

``events`` (bus messages and event tasks routed), ``unhandled_events`` (no handler, no
dependencies), ``batches``, ``dependencies`` (invalidated, after de-duplication per batch),
``entries_removed``, ``target_failures`` (per manager), ``retries`` (failed shares handed to the
retry path), ``dead_letters`` (by kind). Operators read them with ``celery inspect
depcache_stats`` and, when prometheus-client is installed, as Prometheus metrics (see
:mod:`depcache_celery.monitoring`).
"""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["COUNTERS", "Stats", "stats"]

COUNTERS = (
    "events",
    "unhandled_events",
    "batches",
    "dependencies",
    "entries_removed",
    "retries",
)
"""The plain counters, always present in :meth:`Stats.snapshot` (0 until counted)."""


class Stats:
    """Thread-safe counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._target_failures: Counter[str] = Counter()
        self._dead_letters: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        with self._lock:
            self._counts[name] += amount

    def target_failed(self, manager: str) -> None:
        """Count one failed invalidation of ``manager``."""
        with self._lock:
            self._target_failures[manager] += 1

    def dead_letter(self, kind: str) -> None:
        """Count one dead letter of ``kind`` (``malformed``, ``expired``, ...)."""
        with self._lock:
            self._dead_letters[kind] += 1

    def snapshot(self) -> dict[str, object]:
        """Every counter, as plain dicts and ints (each of :data:`COUNTERS`, 0 if never counted;
        ``target_failures`` and ``dead_letters`` as dicts by manager and by kind)."""
        with self._lock:
            out: dict[str, object] = dict.fromkeys(COUNTERS, 0)
            out.update(self._counts)
            out["target_failures"] = dict(self._target_failures)
            out["dead_letters"] = dict(self._dead_letters)
            return out

    def reset(self) -> None:
        """Zero every counter (for tests)."""
        with self._lock:
            self._counts.clear()
            self._target_failures.clear()
            self._dead_letters.clear()


stats = Stats()
"""The process's counters."""
