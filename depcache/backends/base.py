"""The backend interface: where entries, dependency indexes and invalidation markers live.

A backend stores opaque entry bytes made by the manager. The abstract methods are those of
simple-dep-cache's backends, so a backend written for it works here. Three methods have
defaults that built-in backends replace to give the stale-set guard and fewer round trips:

* ``lookup(key)`` returns the entry and the *epoch* (the invalidation counter) read with it;
* ``store(key, value, ttl, dependencies, epoch)`` stores only if no dependency was invalidated
  after ``epoch`` and returns whether it stored;
* ``invalidate_dependencies(deps)`` invalidates several dependencies at once.

A backend that keeps the defaults works, without the stale-set guard.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Protocol

from ..announce import Announcer
from ..config import ConfigBase

__all__ = [
    "AsyncCacheBackend",
    "BackendMixin",
    "CacheBackend",
    "HeldEpoch",
    "Subscriber",
    "Subscription",
]

Blob = bytes


class HeldEpoch(int):
    """An epoch a lookup read while an invalidation was still in flight (Redis Cluster): below
    that invalidation's, so it is right for the stale-set check at store time, but it does not
    change when the invalidation completes, so calls must not share a computation on it (single
    flight keys on the epoch)."""

    __slots__ = ()


class Subscriber(Protocol):
    """What :meth:`BackendMixin.subscribe` feeds: the messages of one channel, and whether they
    may have been lost. Called from the backend's thread (or in process, by the publisher)."""

    def subscribed(self) -> None:
        """The subscription is confirmed (again, after a reconnection): from now on every
        message is delivered; messages sent before may have been lost."""

    def message(self, data: bytes | str) -> None:
        """One message published on the channel (as sent: not parsed, possibly malformed)."""

    def lost(self) -> None:
        """The subscription dropped: messages are lost until the next :meth:`subscribed`."""


class Subscription(Protocol):
    """A running subscription (see :meth:`BackendMixin.subscribe`)."""

    def stop(self) -> None:
        """Stop delivering (soon: a thread may deliver for up to about half a second)."""


class BackendMixin:
    """Key naming shared by every backend (sync and async), and its announcements."""

    #: True when ``store`` honours the epoch (the stale-set guard).
    guards_stale_sets = False
    #: Set by the manager: built-in backends publish every invalidation with it.
    announcer: Announcer | None = None

    def __init__(self, config: ConfigBase) -> None:
        self.config = config
        self.prefix = config.prefix

    def subscribe(self, channel: str, subscriber: Subscriber) -> Subscription | None:
        """Deliver the messages announced on ``channel`` (this backend's invalidations, from
        every process) to ``subscriber``, until the subscription is stopped.

        The memory backend delivers in process; the Redis backends subscribe with Redis pub/sub
        in a daemon thread. The default returns None: this backend announces nothing, so an
        in-process cache (L1) on it stays off."""
        return None

    def _cache_key(self, key: str) -> str:
        """The storage key of entry ``key``."""
        return f"{self.prefix}:k:{key}"

    def _deps_key(self, dependency: str) -> str:
        """The storage key of the index of ``dependency`` (hash-tagged for Redis Cluster): its
        entries, and its marker (member ``''`` scored minus the epoch of its last invalidation)."""
        return f"{self.prefix}:d:{{{dependency}}}:i"

    def _epoch_key(self) -> str:
        """The storage key of the invalidation counter."""
        return f"{self.prefix}:epoch"

    def _floor_key(self) -> str:
        """The storage key of the floor: entries computed from an epoch below it are void (the
        epoch's slot, ``{P:epoch}``)."""
        return f"{{{self.prefix}:epoch}}:floor"

    def _nodes_key(self) -> str:
        """The storage key of the record of the masters' identities (``backends/watch.py``)."""
        return f"{{{self.prefix}:epoch}}:nodes"


class CacheBackend(BackendMixin, ABC):
    """A synchronous backend.

    Errors of the underlying store should be raised as
    :class:`~depcache.errors.BackendError` (other exceptions are treated the same way by the
    decorator's ``silent_backend_errors``).
    """

    @abstractmethod
    def set(
        self,
        key: str,
        value: Blob,
        ttl: float | None = None,
        dependencies: Iterable[str] | None = None,
    ) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (None: no expiry), indexed by
        each dependency."""

    @abstractmethod
    def get(self, key: str) -> Blob | None:
        """Return the stored bytes of ``key``, or None when it is missing."""

    @abstractmethod
    def delete(self, *keys: str) -> int:
        """Delete entries; return how many existed."""

    @abstractmethod
    def clear(self, pattern: str = "*") -> int:
        """Delete entries whose key matches the glob ``pattern``; return how many."""

    @abstractmethod
    def invalidate_dependency(self, dependency: str) -> int:
        """Delete every entry indexed under ``dependency``; return how many existed."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether entry ``key`` exists."""

    @abstractmethod
    def ttl(self, key: str) -> int:
        """Seconds left for ``key``: -1 without expiry, -2 when missing."""

    def lookup(self, key: str) -> tuple[Blob | None, int | None]:
        """Return the entry and the current epoch (None when not guarding stale sets)."""
        return self.get(key), None

    def store(
        self,
        key: str,
        value: Blob,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> bool:
        """Store unless a dependency was invalidated after ``epoch``; return whether stored."""
        self.set(key, value, ttl, dependencies)
        return True

    def invalidate_dependencies(self, dependencies: Iterable[str]) -> int:
        """Invalidate several dependencies; return the number of entries removed."""
        return sum(self.invalidate_dependency(dep) for dep in dependencies)

    def check(self, epoch: int, dependencies: Iterable[str]) -> bool:
        """Whether an entry computed from ``epoch`` is still valid: none of ``dependencies``
        was invalidated since (what ``l1_validate`` asks before an L1 hit). The default,
        for backends that keep no invalidation markers, cannot tell and says yes."""
        return True

    def acquire_lock(self, key: str, ttl: float) -> str | None:
        """Take the cross-process computation lock of ``key`` for at most ``ttl`` seconds.

        Returns a token to give to :meth:`release_lock`; ``""`` when this backend has no such
        lock (compute without one); None after waiting for another holder (look up again).
        """
        return ""

    def release_lock(self, key: str, token: str) -> None:
        """Release a lock taken by :meth:`acquire_lock` and wake its waiters."""

    def close(self) -> None:
        """Release connections. The default does nothing."""


class AsyncCacheBackend(BackendMixin, ABC):
    """An asynchronous backend: the same contract as :class:`CacheBackend`, awaited."""

    @abstractmethod
    async def set(
        self,
        key: str,
        value: Blob,
        ttl: float | None = None,
        dependencies: Iterable[str] | None = None,
    ) -> None:
        """See :meth:`CacheBackend.set`."""

    @abstractmethod
    async def get(self, key: str) -> Blob | None:
        """See :meth:`CacheBackend.get`."""

    @abstractmethod
    async def delete(self, *keys: str) -> int:
        """See :meth:`CacheBackend.delete`."""

    @abstractmethod
    async def clear(self, pattern: str = "*") -> int:
        """See :meth:`CacheBackend.clear`."""

    @abstractmethod
    async def invalidate_dependency(self, dependency: str) -> int:
        """See :meth:`CacheBackend.invalidate_dependency`."""

    @abstractmethod
    async def exists(self, key: str) -> bool:
        """See :meth:`CacheBackend.exists`."""

    @abstractmethod
    async def ttl(self, key: str) -> int:
        """See :meth:`CacheBackend.ttl`."""

    async def lookup(self, key: str) -> tuple[Blob | None, int | None]:
        """See :meth:`CacheBackend.lookup`."""
        return await self.get(key), None

    async def store(
        self,
        key: str,
        value: Blob,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> bool:
        """See :meth:`CacheBackend.store`."""
        await self.set(key, value, ttl, dependencies)
        return True

    async def check(self, epoch: int, dependencies: Iterable[str]) -> bool:
        """See :meth:`CacheBackend.check`."""
        return True

    async def invalidate_dependencies(self, dependencies: Iterable[str]) -> int:
        """See :meth:`CacheBackend.invalidate_dependencies`."""
        removed = 0
        for dep in dependencies:
            removed += await self.invalidate_dependency(dep)
        return removed

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        """See :meth:`CacheBackend.acquire_lock`."""
        return ""

    async def release_lock(self, key: str, token: str) -> None:
        """See :meth:`CacheBackend.release_lock`."""

    async def close(self) -> None:
        """Release connections. The default does nothing."""
