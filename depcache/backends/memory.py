"""In-process backends: a real store with TTLs, dependency indexes and the stale-set guard.

``FakeCacheBackend`` and ``FakeAsyncCacheBackend`` keep their data in a :class:`MemoryStore`
shared by every memory backend with the same prefix in this process, as two clients of one
Redis would share a server. They are the embedded default of the demo and of tests, and
follow the same rules as the Redis backend (see ``docs/design.md``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any, ClassVar, TypeVar

from ..announce import Announcer
from ..config import ConfigBase
from .adapters import DelegatingAsyncBackend
from .base import Blob, CacheBackend, Subscriber, Subscription

T = TypeVar("T")

__all__ = ["FakeAsyncCacheBackend", "FakeCacheBackend", "MemoryStore"]

_NEVER = math.inf


class MemoryStore:
    """The data of one prefix: entries, indexes, markers and the epoch, under one lock."""

    _stores: ClassVar[dict[str, MemoryStore]] = {}
    _stores_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, guard_seconds: float) -> None:
        self.guard_seconds = guard_seconds
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Blob, float]] = {}
        self._indexes: dict[str, dict[str, float]] = {}
        self._marks: dict[str, tuple[int, float]] = {}
        self._epoch = 0
        self._subscribers: dict[str, list[Callable[[str], None]]] = {}

    @classmethod
    def for_prefix(cls, config: ConfigBase) -> MemoryStore:
        """The process-wide store of ``config.prefix`` (created on first use)."""
        with cls._stores_lock:
            store = cls._stores.get(config.prefix)
            if store is None:
                store = cls._stores[config.prefix] = MemoryStore(config.guard_seconds)
            return store

    # -- helpers (lock held) ---------------------------------------------------------------
    def _live(self, key: str, now: float) -> tuple[Blob, float] | None:
        item = self._entries.get(key)
        if item is not None and item[1] <= now:
            del self._entries[key]
            return None
        return item

    # -- operations --------------------------------------------------------------------------
    def lookup(self, key: str) -> tuple[Blob | None, int]:
        with self._lock:
            item = self._live(key, time.monotonic())
            return (None if item is None else item[0]), self._epoch

    def store(
        self, key: str, value: Blob, ttl: float | None, deps: Iterable[str], epoch: int | None
    ) -> bool:
        deps = list(deps)
        with self._lock:
            now = time.monotonic()
            if epoch is not None:
                for dep in deps:
                    mark = self._marks.get(dep)
                    if mark is not None and mark[1] > now and mark[0] > epoch:
                        return False
            expires = now + ttl if ttl is not None else _NEVER
            self._entries[key] = (value, expires)
            for dep in deps:
                index = self._indexes.setdefault(dep, {})
                index.pop(key, None)
                index[key] = expires  # the newest member goes last
                self._prune(index, now)
            return True

    def _prune(self, index: dict[str, float], now: float) -> None:
        """Re-check the two oldest members: drop them if expired or deleted, else requeue.

        O(1) per store, and every member is eventually checked, like Redis's sampling."""
        for _ in range(min(2, len(index) - 1)):
            member, expires = next(iter(index.items()))
            del index[member]
            if expires > now and member in self._entries:
                index[member] = expires

    def invalidate(self, deps: Iterable[str]) -> int:
        with self._lock:
            now = time.monotonic()
            self._epoch += 1
            removed = 0
            for dep in deps:
                self._marks[dep] = (self._epoch, now + self.guard_seconds)
                for key in self._indexes.pop(dep, {}):
                    if self._live(key, now) is not None:
                        del self._entries[key]
                        removed += 1
            for dep in [d for d, (_, exp) in self._marks.items() if exp <= now]:
                del self._marks[dep]
            return removed

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(message)`` for every message published on ``channel``."""
        with self._lock:
            self._subscribers.setdefault(channel, []).append(callback)

    def unsubscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        """Stop calling ``callback`` for ``channel``."""
        with self._lock:
            callbacks = self._subscribers.get(channel, [])
            if callback in callbacks:
                callbacks.remove(callback)

    def publish(self, channel: str, message: str) -> int:
        """In-process pub/sub: deliver ``message`` to the subscribers of ``channel``."""
        with self._lock:
            callbacks = list(self._subscribers.get(channel, ()))
        for callback in callbacks:
            callback(message)
        return len(callbacks)

    def invalidate_and_announce(self, deps: Iterable[str], announcer: Announcer | None) -> int:
        """Invalidate, then publish the announcement (outside the lock)."""
        deps = sorted(set(deps))
        removed = self.invalidate(deps)
        if announcer is not None:
            self.publish(announcer.channel, announcer.message(deps, removed))
        return removed

    def delete(self, keys: Iterable[str]) -> int:
        with self._lock:
            now = time.monotonic()
            removed = 0
            for key in keys:
                if self._live(key, now) is not None:
                    del self._entries[key]
                    removed += 1
            return removed

    def clear(self, pattern: str) -> int:
        with self._lock:
            now = time.monotonic()
            doomed = [k for k in self._entries if fnmatchcase(k, pattern)]
            removed = sum(1 for k in doomed if self._live(k, now) is not None)
            for key in doomed:
                self._entries.pop(key, None)
            return removed

    def ttl(self, key: str) -> int:
        with self._lock:
            item = self._live(key, time.monotonic())
            if item is None:
                return -2
            if item[1] == _NEVER:
                return -1
            return max(0, round(item[1] - time.monotonic()))


class FakeCacheBackend(CacheBackend):
    """In-memory synchronous backend (thread-safe)."""

    guards_stale_sets = True

    def __init__(self, config: ConfigBase | None = None, store: MemoryStore | None = None) -> None:
        super().__init__(config or ConfigBase(backend="memory"))
        self.store_data = store or MemoryStore.for_prefix(self.config)

    def set(
        self,
        key: str,
        value: Blob,
        ttl: float | None = None,
        dependencies: Iterable[str] | None = None,
    ) -> None:
        """Store unconditionally."""
        self.store_data.store(self._cache_key(key), value, ttl, dependencies or (), None)

    def get(self, key: str) -> Blob | None:
        """Return the entry bytes or None."""
        return self.store_data.lookup(self._cache_key(key))[0]

    def lookup(self, key: str) -> tuple[Blob | None, int | None]:
        """Return the entry bytes (or None) and the epoch."""
        return self.store_data.lookup(self._cache_key(key))

    def store(
        self,
        key: str,
        value: Blob,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> bool:
        """Store unless a dependency was invalidated after ``epoch``."""
        return self.store_data.store(self._cache_key(key), value, ttl, dependencies, epoch)

    def delete(self, *keys: str) -> int:
        """Delete entries; return how many existed."""
        return self.store_data.delete(self._cache_key(k) for k in keys)

    def clear(self, pattern: str = "*") -> int:
        """Delete entries matching ``pattern``."""
        return self.store_data.clear(self._cache_key(pattern))

    def invalidate_dependency(self, dependency: str) -> int:
        """Delete every entry indexed under ``dependency``."""
        return self.store_data.invalidate_and_announce((dependency,), self.announcer)

    def invalidate_dependencies(self, dependencies: Iterable[str]) -> int:
        """Invalidate several dependencies at once."""
        return self.store_data.invalidate_and_announce(dependencies, self.announcer)

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        return self.store_data.ttl(self._cache_key(key)) != -2

    def ttl(self, key: str) -> int:
        """Seconds left: -1 without expiry, -2 when missing."""
        return self.store_data.ttl(self._cache_key(key))

    def subscribe(self, channel: str, subscriber: Subscriber) -> Subscription:
        """In process: every invalidation of this store is delivered as it is announced, so
        the subscription is confirmed at once and never drops."""
        subscription = _InProcess(self.store_data, channel, subscriber)
        subscriber.subscribed()
        return subscription


class _InProcess:
    """A subscription to a :class:`MemoryStore`'s channel; stopping it also tells the
    subscriber it no longer hears anything (an L1 stops serving)."""

    def __init__(self, store: MemoryStore, channel: str, subscriber: Subscriber) -> None:
        self.store = store
        self.channel = channel
        self.subscriber = subscriber
        store.subscribe(channel, subscriber.message)
        #: as on the Redis listener thread: confirmed (at once, here), and how often
        self.subscribed = threading.Event()
        self.subscribed.set()
        self.subscriptions = 1

    def stop(self) -> None:
        """Unsubscribe."""
        self.store.unsubscribe(self.channel, self.subscriber.message)
        self.subscriber.lost()


class FakeAsyncCacheBackend(DelegatingAsyncBackend):
    """In-memory asynchronous backend: a :class:`FakeCacheBackend` (which never waits on I/O)
    called inline; shares its store with FakeCacheBackend of the same prefix."""

    def __init__(self, config: ConfigBase | None = None, store: MemoryStore | None = None) -> None:
        backend = FakeCacheBackend(config, store)
        super().__init__(backend)  # the manager gives it its announcer too (``.sync``)
        self.store_data = backend.store_data

    async def _call(self, method: Callable[..., T], *args: Any) -> T:
        return method(*args)
