"""Counters of what the worker did: per process in :data:`stats`, for the whole worker (main
process and prefork pool children) in :func:`worker_snapshot`.

``events`` (bus messages and event tasks routed), ``unhandled_events`` (no handler, no
dependencies), ``batches``, ``dependencies`` (invalidated, after de-duplication per batch),
``entries_removed``, ``target_failures`` (per manager), ``retries`` (failed shares handed to the
retry path), ``dead_letters`` (by kind). Operators read them with ``celery inspect
depcache_stats`` and, when prometheus-client is installed, as Prometheus metrics (see
:mod:`depcache_celery.worker.monitoring`); both report :func:`worker_snapshot`.

Pool children: with the prefork pool, the ``depcache.invalidate`` and ``depcache.event`` tasks
run (and count) in child processes, which the main process's counters do not see. So every
process that imports this module gets a directory name of its own (in the system's temporary
directory, created when first written to); a process forked from it (a pool child) starts with
its counters at zero and, at the end of each of those tasks (:func:`save_for_parent`), writes
its counters there as ``<pid>.json`` when they changed. :func:`worker_snapshot` adds up the
process's own counters and its children's files; the files of children that have exited are
folded into a running total and removed, so counts survive children being replaced
(``worker_max_tasks_per_child``). The directory is removed when the process exits normally.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TypeGuard

__all__ = ["COUNTERS", "Stats", "combine", "save_for_parent", "stats", "worker_snapshot"]

logger = logging.getLogger(__name__)

COUNTERS = (
    "events",
    "unhandled_events",
    "batches",
    "dependencies",
    "entries_removed",
    "retries",
)
"""The plain counters, always present in :meth:`Stats.snapshot` (0 until counted)."""

_LABELLED = ("target_failures", "dead_letters")


class Stats:
    """Thread-safe counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._target_failures: Counter[str] = Counter()
        self._dead_letters: Counter[str] = Counter()
        self._version = 0

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        with self._lock:
            self._counts[name] += amount
            self._version += 1

    def target_failed(self, manager: str) -> None:
        """Count one failed invalidation of ``manager``."""
        with self._lock:
            self._target_failures[manager] += 1
            self._version += 1

    def dead_letter(self, kind: str) -> None:
        """Count one dead letter of ``kind`` (``malformed``, ``expired``, ...)."""
        with self._lock:
            self._dead_letters[kind] += 1
            self._version += 1

    def absorb(self, snapshot: Mapping[str, object]) -> None:
        """Add the counts of ``snapshot`` (as :meth:`snapshot` returns) to these."""
        with self._lock:
            for name, value in snapshot.items():
                if name in _LABELLED and isinstance(value, Mapping):
                    target = (
                        self._target_failures if name == "target_failures" else self._dead_letters
                    )
                    for key, count in value.items():
                        if _is_count(count):
                            target[str(key)] += count
                elif _is_count(value):
                    self._counts[name] += value
            self._version += 1

    @property
    def version(self) -> int:
        """Grows with every change (to tell whether the counters changed)."""
        with self._lock:
            return self._version

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
            self._version += 1

    def _after_fork(self) -> None:
        """In a forked child: zero, with a new lock (another thread may have held the old one
        at the fork)."""
        self._lock = threading.Lock()
        self._counts.clear()
        self._target_failures.clear()
        self._dead_letters.clear()
        self._version = 0


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def combine(*snapshots: Mapping[str, object]) -> dict[str, object]:
    """The sum of several :meth:`Stats.snapshot` results, in the same shape."""
    total = Stats()
    for snapshot in snapshots:
        total.absorb(snapshot)
    return total.snapshot()


stats = Stats()
"""The process's counters."""


# --- pool children --------------------------------------------------------------------------------


class _Sharing:
    """This process's directory for its children's counters, and the file it writes its own to
    when it is itself a forked child."""

    def __init__(self) -> None:
        self.reset(None)

    def reset(self, parent_file: Path | None) -> None:
        """Start over as the current process (after a fork, with the parent's file)."""
        self.pid = os.getpid()
        self.directory = Path(tempfile.gettempdir()) / (
            f"depcache-celery-{self.pid}-{uuid.uuid4().hex[:12]}"
        )
        self.parent_file = parent_file
        self.saved_version = -1
        self.retired = Stats()  # the children that exited
        self.lock = threading.Lock()


_sharing = _Sharing()


def _after_fork_in_child() -> None:
    stats._after_fork()
    _sharing.reset(_sharing.directory / f"{os.getpid()}.json")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def save_for_parent() -> None:
    """In a forked child (a pool process): write its counters for the parent process to read,
    when they changed since the last time. Nothing in other processes; never raises."""
    sharing = _sharing
    target = sharing.parent_file
    if target is None:
        return
    try:
        with sharing.lock:
            version = stats.version
            if version == sharing.saved_version:
                return
            snapshot = stats.snapshot()
            target.parent.mkdir(mode=0o700, exist_ok=True)
            temporary = target.with_suffix(".tmp")
            temporary.write_text(json.dumps(snapshot))
            temporary.replace(target)
            sharing.saved_version = version
    except Exception:
        logger.exception("depcache_celery: could not save this pool process's counters")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children() -> list[dict[str, object]]:
    """The counters of this process's children: live ones' files, and the running total of
    those that exited (whose files are folded into it and removed)."""
    sharing = _sharing
    with sharing.lock:
        live: list[dict[str, object]] = []
        try:
            paths = sorted(sharing.directory.glob("*.json"))
        except OSError:
            paths = []
        for path in paths:
            try:
                pid = int(path.stem)
                data = json.loads(path.read_text())
            except (ValueError, OSError):  # not ours, or gone meanwhile
                continue
            if not isinstance(data, dict):
                continue
            if _alive(pid):
                live.append(data)
                continue
            sharing.retired.absorb(data)
            with contextlib.suppress(OSError):
                path.unlink()
        return [sharing.retired.snapshot(), *live]


def worker_snapshot() -> dict[str, object]:
    """This process's counters plus those of its pool children (see the module's docstring),
    in the shape of :meth:`Stats.snapshot`."""
    return combine(stats.snapshot(), *_children())


def _remove_directory() -> None:
    sharing = _sharing
    if sharing.pid == os.getpid():
        shutil.rmtree(sharing.directory, ignore_errors=True)


atexit.register(_remove_directory)
