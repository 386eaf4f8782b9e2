"""Adapters that give a manager both faces when only one backend was supplied."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

from ..errors import ConfigError
from .base import AsyncCacheBackend, Blob, CacheBackend, Subscriber, Subscription

__all__ = ["AsyncOnlyBackend", "DelegatingAsyncBackend", "ThreadedAsyncBackend"]

T = TypeVar("T")


class DelegatingAsyncBackend(AsyncCacheBackend):
    """The async face of a sync backend: every method runs the sync one through
    :meth:`_call`, written once here. Subclasses decide how: in a worker thread (a backend
    that blocks), or inline (one that never does I/O)."""

    def __init__(self, backend: CacheBackend) -> None:
        super().__init__(backend.config)
        self.sync = backend
        self.guards_stale_sets = backend.guards_stale_sets

    async def _call(self, method: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    def subscribe(self, channel: str, subscriber: Subscriber) -> Subscription | None:
        """See CacheBackend.subscribe."""
        return self.sync.subscribe(channel, subscriber)

    async def set(
        self,
        key: str,
        value: Blob,
        ttl: float | None = None,
        dependencies: Iterable[str] | None = None,
    ) -> None:
        """See CacheBackend.set."""
        await self._call(self.sync.set, key, value, ttl, dependencies)

    async def get(self, key: str) -> Blob | None:
        """See CacheBackend.get."""
        return await self._call(self.sync.get, key)

    async def lookup(self, key: str) -> tuple[Blob | None, int | None]:
        """See CacheBackend.lookup."""
        return await self._call(self.sync.lookup, key)

    async def store(
        self,
        key: str,
        value: Blob,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> bool:
        """See CacheBackend.store."""
        return await self._call(self.sync.store, key, value, ttl, dependencies, epoch)

    async def check(self, epoch: int, dependencies: Iterable[str]) -> bool:
        """See CacheBackend.check."""
        return await self._call(self.sync.check, epoch, list(dependencies))

    async def delete(self, *keys: str) -> int:
        """See CacheBackend.delete."""
        return await self._call(self.sync.delete, *keys)

    async def clear(self, pattern: str = "*") -> int:
        """See CacheBackend.clear."""
        return await self._call(self.sync.clear, pattern)

    async def invalidate_dependency(self, dependency: str) -> int:
        """See CacheBackend.invalidate_dependency."""
        return await self._call(self.sync.invalidate_dependency, dependency)

    async def invalidate_dependencies(self, dependencies: Iterable[str]) -> int:
        """See CacheBackend.invalidate_dependencies."""
        return await self._call(self.sync.invalidate_dependencies, list(dependencies))

    async def exists(self, key: str) -> bool:
        """See CacheBackend.exists."""
        return await self._call(self.sync.exists, key)

    async def ttl(self, key: str) -> int:
        """See CacheBackend.ttl."""
        return await self._call(self.sync.ttl, key)

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        """See CacheBackend.acquire_lock."""
        return await self._call(self.sync.acquire_lock, key, ttl)

    async def release_lock(self, key: str, token: str) -> None:
        """See CacheBackend.release_lock."""
        await self._call(self.sync.release_lock, key, token)


class ThreadedAsyncBackend(DelegatingAsyncBackend):
    """Runs a sync backend's methods in a worker thread, so the event loop never blocks."""

    async def _call(self, method: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(method, *args)


class AsyncOnlyBackend(CacheBackend):
    """Stands in for the sync backend of a manager built with only an async backend."""

    def __init__(self, backend: AsyncCacheBackend) -> None:
        super().__init__(backend.config)
        self.async_backend = backend

    def subscribe(self, channel: str, subscriber: Subscriber) -> Subscription | None:
        """The async backend's announcements (subscribing does not block)."""
        return self.async_backend.subscribe(channel, subscriber)

    def _refuse(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise ConfigError(
            f"the manager with prefix {self.prefix!r} has only an async backend: use async "
            "functions and the a* methods, or give it a sync backend too"
        )

    set = get = delete = clear = invalidate_dependency = exists = ttl = _refuse
