"""Adapters that give a manager both faces when only one backend was supplied."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, NoReturn

from ..errors import ConfigError
from .base import AsyncCacheBackend, Blob, CacheBackend

__all__ = ["AsyncOnlyBackend", "ThreadedAsyncBackend"]


class ThreadedAsyncBackend(AsyncCacheBackend):
    """Runs a sync backend's methods in a worker thread, so the event loop never blocks."""

    def __init__(self, backend: CacheBackend) -> None:
        super().__init__(backend.config)
        self.sync = backend
        self.guards_stale_sets = backend.guards_stale_sets

    async def set(
        self,
        key: str,
        value: Blob,
        ttl: float | None = None,
        dependencies: Iterable[str] | None = None,
    ) -> None:
        """See CacheBackend.set."""
        await asyncio.to_thread(self.sync.set, key, value, ttl, dependencies)

    async def get(self, key: str) -> Blob | None:
        """See CacheBackend.get."""
        return await asyncio.to_thread(self.sync.get, key)

    async def lookup(self, key: str) -> tuple[Blob | None, int | None]:
        """See CacheBackend.lookup."""
        return await asyncio.to_thread(self.sync.lookup, key)

    async def store(
        self,
        key: str,
        value: Blob,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> bool:
        """See CacheBackend.store."""
        return await asyncio.to_thread(self.sync.store, key, value, ttl, dependencies, epoch)

    async def delete(self, *keys: str) -> int:
        """See CacheBackend.delete."""
        return await asyncio.to_thread(self.sync.delete, *keys)

    async def clear(self, pattern: str = "*") -> int:
        """See CacheBackend.clear."""
        return await asyncio.to_thread(self.sync.clear, pattern)

    async def invalidate_dependency(self, dependency: str) -> int:
        """See CacheBackend.invalidate_dependency."""
        return await asyncio.to_thread(self.sync.invalidate_dependency, dependency)

    async def invalidate_dependencies(self, dependencies: Iterable[str]) -> int:
        """See CacheBackend.invalidate_dependencies."""
        return await asyncio.to_thread(self.sync.invalidate_dependencies, list(dependencies))

    async def exists(self, key: str) -> bool:
        """See CacheBackend.exists."""
        return await asyncio.to_thread(self.sync.exists, key)

    async def ttl(self, key: str) -> int:
        """See CacheBackend.ttl."""
        return await asyncio.to_thread(self.sync.ttl, key)

    async def check(self, epoch: int, dependencies: Iterable[str]) -> bool:
        """See CacheBackend.check."""
        return await asyncio.to_thread(self.sync.check, epoch, list(dependencies))

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        """See CacheBackend.acquire_lock."""
        return await asyncio.to_thread(self.sync.acquire_lock, key, ttl)

    async def release_lock(self, key: str, token: str) -> None:
        """See CacheBackend.release_lock."""
        await asyncio.to_thread(self.sync.release_lock, key, token)


class AsyncOnlyBackend(CacheBackend):
    """Stands in for the sync backend of a manager built with only an async backend."""

    def __init__(self, backend: AsyncCacheBackend) -> None:
        super().__init__(backend.config)

    def _refuse(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise ConfigError(
            f"the manager with prefix {self.prefix!r} has only an async backend: use async "
            "functions and the a* methods, or give it a sync backend too"
        )

    set = get = delete = clear = invalidate_dependency = exists = ttl = _refuse
