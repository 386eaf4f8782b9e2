"""Redis backends (sync and async) on standalone Redis.

Round trips: a lookup is one ``MGET`` of the entry and the epoch (one command reads both
atomically, at a tenth of a script call's cost to the server), a store is one ``EVALSHA`` of
``lua/store.lua`` whatever the number of dependencies, and an invalidation is one ``EVALSHA``
of ``lua/invalidate.lua`` whatever the number of entries. See ``docs/design.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from ..config import RedisConfig
from .base import AsyncCacheBackend, BackendMixin, Blob, CacheBackend
from .locks import LockSteps
from .loops import PerLoop
from .redis_client import (
    REDIS_ERRORS,
    acall_script,
    backend_error,
    backend_errors,
    call_script,
    create_async_client,
    create_sync_client,
)
from .steps import arun_steps, run_steps

__all__ = ["AsyncRedisCacheBackend", "RedisCacheBackend"]

_BATCH = 500


class _RedisLayout(BackendMixin):
    """Argument packing shared by the sync and async Redis backends (no I/O here)."""

    config: RedisConfig
    _entry_prefix: str  # the storage key of entry ``k`` is _entry_prefix + k
    _epoch: str  # the storage key of the epoch

    def _layout(self) -> None:
        self._entry_prefix = self._cache_key("")
        self._epoch = self._epoch_key()

    def _store_call(
        self,
        key: str,
        value: Blob,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> tuple[list[str], list[Any]]:
        keys = [self._cache_key(key)]
        for dep in sorted(set(dependencies)):
            keys.append(self._deps_key(dep))
            keys.append(self._mark_key(dep))
        ttl_ms = 0 if ttl is None else max(1, round(ttl * 1000))
        return keys, [value, ttl_ms, "" if epoch is None else epoch]

    def _invalidate_call(self, dependencies: Iterable[str]) -> tuple[list[str], list[Any]]:
        deps = sorted(set(dependencies))
        keys = [self._epoch_key()]
        for dep in deps:
            keys.append(self._deps_key(dep))
            keys.append(self._mark_key(dep))
        guard_ms = max(1, round(self.config.guard_seconds * 1000))
        announcer = self.announcer
        if announcer is None:
            return keys, [guard_ms, "", ""]
        return keys, [guard_ms, announcer.channel, announcer.head(deps)]

    @staticmethod
    def _parse_lookup(reply: Any) -> tuple[Blob | None, int | None]:
        value, epoch = reply
        if value is not None:
            return value, None  # a hit: the epoch is only needed on a miss
        return None, int(epoch or 0)


class RedisCacheBackend(_RedisLayout, LockSteps, CacheBackend):
    """Synchronous Redis backend.

    Args:
        config: connection settings; a plain ConfigBase means ``RedisConfig()`` defaults with
            its prefix.
        redis_client: an existing ``redis.Redis`` to use instead of creating one.

    Every method raises :class:`~depcache.errors.BackendError` when Redis fails.
    """

    guards_stale_sets = True

    def __init__(self, config: Any = None, redis_client: redis.Redis | None = None) -> None:
        cfg = RedisConfig.from_config(config if config is not None else RedisConfig())
        super().__init__(cfg)
        self.config = cfg
        self.redis = redis_client if redis_client is not None else create_sync_client(cfg)
        self._layout()

    def lookup(self, key: str) -> tuple[Blob | None, int | None]:
        """Entry bytes, or None and the epoch, in one round trip."""
        try:
            # execute_command directly: redis-py's mget() wrapper costs a hit about a microsecond
            reply = self.redis.execute_command(  # type: ignore[no-untyped-call]  # untyped upstream
                "MGET", self._entry_prefix + key, self._epoch
            )
        except REDIS_ERRORS as exc:
            raise backend_error(self.config, exc) from exc
        return self._parse_lookup(reply)

    def store(
        self,
        key: str,
        value: Blob,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> bool:
        """Store and index atomically unless a dependency was invalidated after ``epoch``."""
        keys, args = self._store_call(key, value, ttl, dependencies, epoch)
        with backend_errors(self.config):
            return bool(call_script(self.redis, "store", keys, args))

    def set(
        self,
        key: str,
        value: Blob,
        ttl: float | None = None,
        dependencies: Iterable[str] | None = None,
    ) -> None:
        """Store and index unconditionally."""
        self.store(key, value, ttl, dependencies or (), None)

    def get(self, key: str) -> Blob | None:
        """The entry bytes, or None."""
        with backend_errors(self.config):
            return cast("Blob | None", self.redis.get(self._cache_key(key)))

    def invalidate_dependency(self, dependency: str) -> int:
        """Delete the entries indexed under ``dependency`` (one round trip)."""
        return self.invalidate_dependencies((dependency,))

    def invalidate_dependencies(self, dependencies: Iterable[str]) -> int:
        """Invalidate several dependencies in one atomic round trip."""
        keys, args = self._invalidate_call(dependencies)
        if len(keys) == 1:
            return 0
        with backend_errors(self.config):
            return int(call_script(self.redis, "invalidate", keys, args))

    def delete(self, *keys: str) -> int:
        """Delete entries; return how many existed."""
        if not keys:
            return 0
        with backend_errors(self.config):
            return int(self.redis.delete(*(self._cache_key(k) for k in keys)))

    def clear(self, pattern: str = "*") -> int:
        """Delete entries whose key matches ``pattern`` (SCAN, then UNLINK in batches)."""
        removed = 0
        batch: list[bytes] = []
        with backend_errors(self.config):
            for found in self.redis.scan_iter(match=self._cache_key(pattern), count=1000):
                batch.append(found)
                if len(batch) >= _BATCH:
                    removed += int(self.redis.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(self.redis.unlink(*batch))
        return removed

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        with backend_errors(self.config):
            return bool(self.redis.exists(self._cache_key(key)))

    def ttl(self, key: str) -> int:
        """Seconds left: -1 without expiry, -2 when missing."""
        with backend_errors(self.config):
            return int(self.redis.ttl(self._cache_key(key)))

    def acquire_lock(self, key: str, ttl: float) -> str | None:
        """See CacheBackend.acquire_lock (``locks.py``)."""
        with backend_errors(self.config):
            return cast("str | None", run_steps(self.redis, self._acquire_steps(key, ttl)))

    def release_lock(self, key: str, token: str) -> None:
        """See CacheBackend.release_lock."""
        with backend_errors(self.config):
            run_steps(self.redis, self._release_steps(key, token))

    def close(self) -> None:
        """Close the connection pool."""
        self.redis.close()


class AsyncRedisCacheBackend(_RedisLayout, LockSteps, AsyncCacheBackend):
    """Asynchronous Redis backend: never blocks the event loop.

    asyncio connections belong to the loop that opened them, so the backend keeps one client
    per running event loop (see ``loops.py``). Every method raises
    :class:`~depcache.errors.BackendError` when Redis fails.
    """

    guards_stale_sets = True

    def __init__(self, config: Any = None) -> None:
        cfg = RedisConfig.from_config(config if config is not None else RedisConfig())
        super().__init__(cfg)
        self.config = cfg
        create_async_client(cfg)  # validate settings now rather than on first use
        self._clients = PerLoop(lambda: create_async_client(cfg))
        self._layout()

    @property
    def redis(self) -> aioredis.Redis:
        """The client of the running event loop."""
        return self._clients.get()

    async def lookup(self, key: str) -> tuple[Blob | None, int | None]:
        """Entry bytes, or None and the epoch, in one round trip."""
        client = self._clients.get()
        try:
            reply = await client.execute_command(  # type: ignore[no-untyped-call]  # untyped upstream
                "MGET", self._entry_prefix + key, self._epoch
            )
        except REDIS_ERRORS as exc:
            raise backend_error(self.config, exc) from exc
        return self._parse_lookup(reply)

    async def store(
        self,
        key: str,
        value: Blob,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> bool:
        """Store and index atomically unless a dependency was invalidated after ``epoch``."""
        keys, args = self._store_call(key, value, ttl, dependencies, epoch)
        with backend_errors(self.config):
            return bool(await acall_script(self._clients.get(), "store", keys, args))

    async def set(
        self,
        key: str,
        value: Blob,
        ttl: float | None = None,
        dependencies: Iterable[str] | None = None,
    ) -> None:
        """Store and index unconditionally."""
        await self.store(key, value, ttl, dependencies or (), None)

    async def get(self, key: str) -> Blob | None:
        """The entry bytes, or None."""
        with backend_errors(self.config):
            return cast("Blob | None", await self._clients.get().get(self._cache_key(key)))

    async def invalidate_dependency(self, dependency: str) -> int:
        """Delete the entries indexed under ``dependency`` (one round trip)."""
        return await self.invalidate_dependencies((dependency,))

    async def invalidate_dependencies(self, dependencies: Iterable[str]) -> int:
        """Invalidate several dependencies in one atomic round trip."""
        keys, args = self._invalidate_call(dependencies)
        if len(keys) == 1:
            return 0
        with backend_errors(self.config):
            return int(await acall_script(self._clients.get(), "invalidate", keys, args))

    async def delete(self, *keys: str) -> int:
        """Delete entries; return how many existed."""
        if not keys:
            return 0
        with backend_errors(self.config):
            return int(await self._clients.get().delete(*(self._cache_key(k) for k in keys)))

    async def clear(self, pattern: str = "*") -> int:
        """Delete entries whose key matches ``pattern`` (SCAN, then UNLINK in batches)."""
        client = self._clients.get()
        removed = 0
        batch: list[bytes] = []
        with backend_errors(self.config):
            async for found in client.scan_iter(match=self._cache_key(pattern), count=1000):
                batch.append(found)
                if len(batch) >= _BATCH:
                    removed += int(await client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(await client.unlink(*batch))
        return removed

    async def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        with backend_errors(self.config):
            return bool(await self._clients.get().exists(self._cache_key(key)))

    async def ttl(self, key: str) -> int:
        """Seconds left: -1 without expiry, -2 when missing."""
        with backend_errors(self.config):
            return int(await self._clients.get().ttl(self._cache_key(key)))

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        """See CacheBackend.acquire_lock (``locks.py``)."""
        with backend_errors(self.config):
            steps = self._acquire_steps(key, ttl)
            return cast("str | None", await arun_steps(self._clients.get(), steps))

    async def release_lock(self, key: str, token: str) -> None:
        """See CacheBackend.release_lock."""
        with backend_errors(self.config):
            await arun_steps(self._clients.get(), self._release_steps(key, token))

    async def close(self) -> None:
        """Close the client of the running loop."""
        await self._clients.close()
