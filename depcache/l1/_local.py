"""The in-process (L1) cache: a bounded LRU with a max age, kept coherent by pub/sub.

Every process with an L1 listens to its manager's invalidation channel (see
``depcache.announce``) and drops the entries of each announced dependency. Pub/sub can lose
messages, so:

* the L1 serves nothing until its subscription is confirmed, and is flushed whenever the
  subscription drops or reconnects;
* a value being loaded (read from the backend, or computed) is only inserted if no
  invalidation of its dependencies, and no flush, happened since its load began (a *load
  token* taken before the backend read), so an announcement that overtakes a load is not lost;
* ``max_age`` bounds how stale an entry can be if all else fails.

Values are shared between callers, as with ``functools.lru_cache``: do not mutate them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from ..call._entry import Entry

__all__ = ["LocalCache"]

_REMEMBERED_DEPS = 10_000


class LocalCache:
    """A thread-safe LRU of decoded entries, indexed by their own manager's dependencies."""

    def __init__(self, size: int, max_age: float) -> None:
        self.size = size
        self.max_age = max_age
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[Entry, float, frozenset[str]]] = OrderedDict()
        self._by_dep: dict[str, set[str]] = {}
        self._seq = 0  # bumped by every invalidation and flush
        self._flushed_at = 0
        self._dep_seq: OrderedDict[str, int] = OrderedDict()  # recent invalidations
        self._forgotten_seq = 0  # the newest invalidation evicted from _dep_seq
        self.active = False

    # -- the read path ---------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        """The entry of ``key`` if present, fresh and the cache is active."""
        item = self._entries.get(key)
        if item is None or not self.active:
            return None
        entry, expires, _deps = item
        if expires <= time.monotonic():
            with self._lock:
                self._remove(key)
            return None
        try:
            self._entries.move_to_end(key)
        except KeyError:  # removed by another thread meanwhile
            return None
        return entry

    def token(self) -> int:
        """Take before reading the backend; give to :meth:`put`."""
        return self._seq

    def put(self, key: str, entry: Entry, deps: Iterable[str], token: int) -> bool:
        """Insert unless an invalidation of ``deps`` (or a flush) came after ``token``."""
        deps = frozenset(deps)
        with self._lock:
            if not self.active or self._flushed_at > token:
                return False
            if self._seq > token:
                for dep in deps:
                    if self._dep_seq.get(dep, self._forgotten_seq) > token:
                        return False
            self._remove(key)
            self._entries[key] = (entry, time.monotonic() + self.max_age, deps)
            for dep in deps:
                self._by_dep.setdefault(dep, set()).add(key)
            while len(self._entries) > self.size:
                self._remove(next(iter(self._entries)))
            return True

    # -- invalidation ------------------------------------------------------------------------
    def invalidate(self, deps: Iterable[str]) -> int:
        """Drop the entries of ``deps``; return how many."""
        dropped = 0
        with self._lock:
            self._seq += 1
            for dep in deps:
                self._dep_seq[dep] = self._seq
                self._dep_seq.move_to_end(dep)
                for key in self._by_dep.pop(dep, ()):
                    dropped += self._remove(key)
            while len(self._dep_seq) > _REMEMBERED_DEPS:
                _, seq = self._dep_seq.popitem(last=False)
                self._forgotten_seq = max(self._forgotten_seq, seq)
        return dropped

    def discard(self, key: str) -> None:
        """Drop one entry."""
        with self._lock:
            self._remove(key)

    def flush(self, *, active: bool) -> None:
        """Drop everything; ``active`` says whether to serve afterwards."""
        with self._lock:
            self._seq += 1
            self._flushed_at = self._seq
            self._entries.clear()
            self._by_dep.clear()
            self._dep_seq.clear()
            self._forgotten_seq = self._seq
            self.active = active

    def __len__(self) -> int:
        return len(self._entries)

    def _remove(self, key: str) -> int:
        item = self._entries.pop(key, None)
        if item is None:
            return 0
        for dep in item[2]:
            keys = self._by_dep.get(dep)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_dep[dep]
        return 1

    def describe(self) -> dict[str, Any]:
        """Size and state, for diagnostics."""
        return {"entries": len(self._entries), "size": self.size, "active": self.active}
