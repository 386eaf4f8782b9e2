"""Redis Cluster backends (sync and async).

On a cluster the entry, the epoch and each dependency's index live in different slots, so
the atomic standalone scripts become short protocols of single-slot steps (``docs/design.md``,
"Redis Cluster"). Each protocol is written once as a generator that yields batches of
commands and receives their replies; the sync and async backends only run the batches, each
as one cluster pipeline (one round trip per batch, the nodes answering in parallel).

Round trips: a hit 1 (the entry), a miss 2 (the entry, then the epoch), a store 3
(placeholder, per-dependency index scripts, commit), an invalidation 4 (epoch, per-dependency
detach scripts, entry deletes, announcement), whatever the number of dependencies or entries.

An invalidation is not atomic here, so a miss must not start from its epoch before it is done:
step 1 records the epoch as in flight and step 4 clears it, and a miss reads the epoch below
every invalidation in flight (``epoch_begin.lua``, ``epoch_read.lua``). Otherwise a computation
starting between steps 1 and 3 could read an inner entry not deleted yet and store its result
with markers that do not refuse it. A missing epoch starts from the server's clock, above any
epoch read before the server restarted empty.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any, cast

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from ..config import RedisConfig
from .base import AsyncCacheBackend, BackendMixin, Blob, CacheBackend, HeldEpoch
from .cluster_client import create_async_cluster_client, create_cluster_client
from .locks import LockSteps
from .loops import PerLoop
from .redis_client import backend_errors
from .steps import Command, Steps, arun_steps, eval_command, run_steps

__all__ = ["AsyncRedisClusterCacheBackend", "RedisClusterCacheBackend"]

_PENDING = b"\x00depcache-pending:"
_PENDING_MS = 10_000  # a placeholder outlives its store's three round trips by far


class _ClusterProtocol(BackendMixin):
    """The cluster protocols, without I/O: each yields command batches, gets their replies."""

    config: RedisConfig

    @staticmethod
    def _ttl_ms(ttl: float | None) -> int:
        return 0 if ttl is None else max(1, round(ttl * 1000))

    def _lookup_steps(self, key: str) -> Steps:
        (value,) = yield [("GET", self._cache_key(key))]
        if value is not None and not value.startswith(_PENDING):
            return value, None  # a hit: the epoch is only needed on a miss
        # a miss (a placeholder is one too: another call is storing): read the epoch, on its
        # own node, so hits never touch that one hot key
        ((epoch, held),) = yield [
            eval_command("epoch_read", self._epoch_keys(), self._in_flight_ms())
        ]
        # held below an invalidation in flight: right for the store's check, not for sharing
        return None, HeldEpoch(epoch) if int(held) else int(epoch)

    def _store_steps(
        self,
        key: str,
        value: Blob,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> Steps:
        entry = self._cache_key(key)
        deps = sorted(set(dependencies))
        ttl_ms = self._ttl_ms(ttl)
        if not deps:
            yield [("SET", entry, value, "PX", ttl_ms) if ttl_ms else ("SET", entry, value)]
            return True
        # 1. a placeholder first, so an invalidation that detaches an index after step 2
        #    finds and deletes it, and step 3 then finds nothing to replace
        token = _PENDING + os.urandom(12).hex().encode()
        yield [("SET", entry, token, "PX", _PENDING_MS)]
        # 2. index under every dependency, unless one was invalidated after `epoch`
        check = "" if epoch is None else int(epoch)  # a plain int for the client
        indexed = yield [
            eval_command("index", (self._deps_key(d), self._mark_key(d)), entry, ttl_ms, check)
            for d in deps
        ]
        accepted = all(int(r) == 1 for r in indexed)
        # 3. the value replaces the placeholder (or the placeholder is dropped)
        final = value if accepted else ""
        (stored,) = yield [eval_command("commit", (entry,), token, final, ttl_ms)]
        return bool(int(stored))

    def _epoch_keys(self) -> tuple[str, str]:
        """The epoch and the set of epochs in flight (invalidations between their steps 1 and
        4), in one slot: ``{P:epoch}`` hashes like ``P:epoch``."""
        epoch = self._epoch_key()
        return epoch, f"{{{epoch}}}:f"

    def _in_flight_ms(self) -> int:
        """How long an invalidation that never finished (its invalidator died) counts as in
        flight: a minute, or the stale-set guard window if longer."""
        return max(60_000, round(self.config.guard_seconds * 1000))

    def _pending_key(self, dependency: str) -> str:
        """Entries detached from ``dependency``'s index whose deletion is not yet confirmed."""
        return f"{self.prefix}:d:{{{dependency}}}:p"

    def _invalidate_steps(self, dependencies: Iterable[str]) -> Steps:
        deps = sorted(set(dependencies))
        if not deps:
            return 0
        ((epoch, in_flight),) = yield [
            eval_command("epoch_begin", self._epoch_keys(), self._in_flight_ms())
        ]
        guard_ms = max(1, round(self.config.guard_seconds * 1000))
        detached = yield [
            eval_command(
                "detach",
                (self._deps_key(d), self._mark_key(d), self._pending_key(d)),
                epoch,
                guard_ms,
            )
            for d in deps
        ]
        members = sorted({m for batch in detached for m in batch})
        removed = 0
        if members:
            deleted = yield [("DEL", m) for m in members]
            removed = sum(int(n) for n in deleted)
        # the deletions are confirmed: drop them from the pending sets, and announce
        final: list[Command] = [
            ("SREM", self._pending_key(d), *batch)
            for d, batch in zip(deps, detached, strict=True)
            if batch
        ]
        final.append(("ZREM", self._epoch_keys()[1], in_flight))  # readers may use it now
        if self.announcer is not None:
            message = self.announcer.message(deps, removed)
            final.append(("PUBLISH", self.announcer.channel, message))
        if final:
            yield final
        return removed

    def _simple(self, *command: Any) -> Steps:
        (reply,) = yield [command]
        return reply

    def _delete_steps(self, keys: Sequence[str]) -> Steps:
        if not keys:
            return 0
        deleted = yield [("DEL", self._cache_key(k)) for k in keys]
        return sum(int(n) for n in deleted)


class RedisClusterCacheBackend(_ClusterProtocol, LockSteps, CacheBackend):
    """Synchronous Redis Cluster backend (``RedisConfig(url=..., cluster=True)``).

    Every method raises :class:`~depcache.errors.BackendError` when the cluster fails.
    """

    guards_stale_sets = True

    def __init__(self, config: Any = None, redis_client: RedisCluster | None = None) -> None:
        cfg = RedisConfig.from_config(config if config is not None else RedisConfig(cluster=True))
        super().__init__(cfg)
        self.config = cfg
        self._redis = redis_client
        self._lock = threading.Lock()
        # redis-py's cluster pools fail when full; callers wait here for a free slot instead
        self._slots = threading.BoundedSemaphore(cfg.max_connections)

    @property
    def redis(self) -> RedisCluster:
        """The cluster client, connected on first use (a cluster that is down does not stop
        the manager from being created)."""
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    self._redis = create_cluster_client(self.config)
        return self._redis

    def _do(self, steps: Steps) -> Any:
        with self._slots, backend_errors(self.config):
            return run_steps(self.redis, steps)

    def lookup(self, key: str) -> tuple[Blob | None, int | None]:
        """Entry bytes (or None) and the epoch, in one pipelined round trip."""
        return cast("tuple[Blob | None, int | None]", self._do(self._lookup_steps(key)))

    def store(
        self,
        key: str,
        value: Blob,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> bool:
        """Store unless a dependency was invalidated after ``epoch`` (three round trips)."""
        return bool(self._do(self._store_steps(key, value, ttl, dependencies, epoch)))

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
        return self.lookup(key)[0]

    def invalidate_dependency(self, dependency: str) -> int:
        """Delete the entries indexed under ``dependency``."""
        return self.invalidate_dependencies((dependency,))

    def invalidate_dependencies(self, dependencies: Iterable[str]) -> int:
        """Invalidate several dependencies (three round trips in all)."""
        return int(self._do(self._invalidate_steps(dependencies)))

    def delete(self, *keys: str) -> int:
        """Delete entries; return how many existed."""
        return int(self._do(self._delete_steps(keys)))

    def clear(self, pattern: str = "*") -> int:
        """Delete entries matching ``pattern`` on every master."""
        with backend_errors(self.config):
            found = [k.decode() for k in self.redis.scan_iter(match=self._cache_key(pattern))]
        entry_prefix = self._cache_key("")
        return self.delete(*(k[len(entry_prefix) :] for k in found))

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an entry."""
        return self.get(key) is not None

    def ttl(self, key: str) -> int:
        """Seconds left: -1 without expiry, -2 when missing."""
        return int(self._do(self._simple("TTL", self._cache_key(key))))

    def acquire_lock(self, key: str, ttl: float) -> str | None:
        """See CacheBackend.acquire_lock (``locks.py``)."""
        return cast("str | None", self._do(self._acquire_steps(key, ttl)))

    def release_lock(self, key: str, token: str) -> None:
        """See CacheBackend.release_lock."""
        self._do(self._release_steps(key, token))

    def close(self) -> None:
        """Close every node connection."""
        self.redis.close()


class _LoopCluster:
    """An asyncio cluster client for one loop, and the semaphore that bounds its use."""

    __slots__ = ("client", "slots")

    def __init__(self, config: RedisConfig) -> None:
        self.client = create_async_cluster_client(config)
        # redis-py's async cluster fails when a node's connections are all busy: wait instead
        self.slots = asyncio.Semaphore(config.max_connections)

    async def aclose(self) -> None:
        await self.client.aclose()


class AsyncRedisClusterCacheBackend(_ClusterProtocol, LockSteps, AsyncCacheBackend):
    """Asynchronous Redis Cluster backend; one client per running event loop."""

    guards_stale_sets = True

    def __init__(self, config: Any = None) -> None:
        cfg = RedisConfig.from_config(config if config is not None else RedisConfig(cluster=True))
        super().__init__(cfg)
        self.config = cfg
        self._clients = PerLoop(lambda: _LoopCluster(cfg))

    def _client(self) -> AsyncRedisCluster:
        return self._clients.get().client

    async def _do(self, steps: Steps) -> Any:
        slot = self._clients.get()
        async with slot.slots:
            with backend_errors(self.config):
                return await arun_steps(slot.client, steps)

    async def lookup(self, key: str) -> tuple[Blob | None, int | None]:
        """See RedisClusterCacheBackend.lookup."""
        return cast("tuple[Blob | None, int | None]", await self._do(self._lookup_steps(key)))

    async def store(
        self,
        key: str,
        value: Blob,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> bool:
        """See RedisClusterCacheBackend.store."""
        return bool(await self._do(self._store_steps(key, value, ttl, dependencies, epoch)))

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
        return (await self.lookup(key))[0]

    async def invalidate_dependency(self, dependency: str) -> int:
        """Delete the entries indexed under ``dependency``."""
        return await self.invalidate_dependencies((dependency,))

    async def invalidate_dependencies(self, dependencies: Iterable[str]) -> int:
        """See RedisClusterCacheBackend.invalidate_dependencies."""
        return int(await self._do(self._invalidate_steps(dependencies)))

    async def delete(self, *keys: str) -> int:
        """Delete entries; return how many existed."""
        return int(await self._do(self._delete_steps(keys)))

    async def clear(self, pattern: str = "*") -> int:
        """Delete entries matching ``pattern`` on every master."""
        with backend_errors(self.config):
            found = [
                k.decode() async for k in self._client().scan_iter(match=self._cache_key(pattern))
            ]
        entry_prefix = self._cache_key("")
        return await self.delete(*(k[len(entry_prefix) :] for k in found))

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds an entry."""
        return (await self.get(key)) is not None

    async def ttl(self, key: str) -> int:
        """Seconds left: -1 without expiry, -2 when missing."""
        return int(await self._do(self._simple("TTL", self._cache_key(key))))

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        """See CacheBackend.acquire_lock (``locks.py``)."""
        return cast("str | None", await self._do(self._acquire_steps(key, ttl)))

    async def release_lock(self, key: str, token: str) -> None:
        """See CacheBackend.release_lock."""
        await self._do(self._release_steps(key, token))

    async def close(self) -> None:
        """Close the client of the running loop."""
        await self._clients.close()
