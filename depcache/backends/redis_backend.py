"""The Redis backends: a storage protocol (``protocols/``) run by a sync or an async runner.

:class:`RedisBackend` and :class:`AsyncRedisBackend` hold everything a backend does, once:
each method runs its protocol's steps (``runners.py``) and turns Redis errors into
:class:`~depcache.errors.BackendError`. The public classes only pick the protocol and the
client: :class:`RedisCacheBackend` / :class:`AsyncRedisCacheBackend` for a standalone server,
``RedisClusterCacheBackend`` / ``AsyncRedisClusterCacheBackend`` (``cluster.py``) for a Redis
Cluster.

Every backend also follows its deployment's :class:`~depcache.backends.watch.DeploymentWatch`:
whether its servers may evict keys (what a store must assume of a missing marker) and whether a
master lost data (the sync backend keeps its prefix's floor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from ..config import RedisConfig
from . import pubsub
from .base import AsyncCacheBackend, Blob, CacheBackend, Subscriber, Subscription
from .loops import PerLoop
from .protocols import ClusterProtocol, StandaloneProtocol
from .redis_client import (
    REDIS_ERRORS,
    QuickCheckout,
    backend_error,
    backend_errors,
    create_async_client,
    create_sync_client,
)
from .runners import (
    AsyncRunner,
    Runner,
    Steps,
    arun_steps,
    async_standalone_runner,
    run_steps,
    standalone_runner,
)
from .watch import DeploymentWatch, watch_for

__all__ = ["AsyncRedisBackend", "AsyncRedisCacheBackend", "RedisBackend", "RedisCacheBackend"]

_BATCH = 500
#: how long a first store waits for the watch to learn whether the servers may evict keys
_FIRST_POLL_WAIT = 2.0

Protocol = StandaloneProtocol | ClusterProtocol


class _Watched:
    """What the sync and async backends share about their deployment: its watch, and its
    invalidation announcements."""

    watch: DeploymentWatch | None
    prefix: str
    config: RedisConfig
    protocol: Protocol

    def subscribe(self, channel: str, subscriber: Subscriber) -> Subscription | None:
        """Redis pub/sub, in a daemon thread with a connection of its own (``pubsub.py``)."""
        cluster = isinstance(self.protocol, ClusterProtocol)
        return pubsub.subscribe(self.config, channel, subscriber, cluster=cluster)

    def _floor(self) -> int | None:
        """The prefix's floor as the watch last read it, or None."""
        return None if self.watch is None else self.watch.floors.get(self.prefix)

    def _may_evict(self) -> bool:
        """Whether a missing marker may have been evicted (True until known)."""
        return self.watch is None or self.watch.can_evict is not False

    def _polled(self) -> bool:
        return self.watch is None or self.watch.can_evict is not None


class RedisBackend(_Watched, CacheBackend):
    """A synchronous backend running ``protocol`` with ``runner``. Every method raises
    :class:`~depcache.errors.BackendError` when Redis fails."""

    guards_stale_sets = True
    config: RedisConfig

    def __init__(self, config: RedisConfig, protocol: Protocol, runner: Runner | None) -> None:
        super().__init__(config)
        self.config = config
        self.protocol = protocol
        self._runner = runner
        self.watch = watch_for(config)
        if self.watch is not None:  # the sync backend keeps the prefix's floor (see watch.py)
            self.watch.watch(self.prefix)

    def _runner_now(self) -> Runner:
        """The runner (made on first use by backends whose client connects lazily)."""
        assert self._runner is not None
        return self._runner

    def _run(self, steps: Steps) -> Any:
        with backend_errors(self.config):
            return run_steps(self._runner_now(), steps)

    def lookup(self, key: str) -> tuple[Blob | None, int | None]:
        """The entry's bytes if it is still valid (nothing it depends on was invalidated
        after it was computed, or lost), else None and the epoch to compute from."""
        steps = self.protocol.lookup(key, self._floor())
        return cast("tuple[Blob | None, int | None]", self._run(steps))

    def store(
        self,
        key: str,
        value: Blob,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> bool:
        """Store and index unless a dependency was invalidated after ``epoch``."""
        if not self._polled() and self.watch is not None:
            self.watch.wait_polled(_FIRST_POLL_WAIT)
        steps = self.protocol.store(key, value, ttl, dependencies, epoch, self._may_evict())
        return bool(self._run(steps))

    def set(
        self,
        key: str,
        value: Blob,
        ttl: float | None = None,
        dependencies: Iterable[str] | None = None,
    ) -> None:
        """Store and index unconditionally."""
        self.store(key, value, ttl, dependencies or (), None)

    def check(self, epoch: int, dependencies: Iterable[str]) -> bool:
        """Whether an entry computed from ``epoch`` is still valid (one round trip)."""
        return bool(self._run(self.protocol.check(epoch, dependencies, self._floor())))

    def get(self, key: str) -> Blob | None:
        """The entry's bytes if it is still valid (see :meth:`lookup`), or None."""
        return self.lookup(key)[0]

    def invalidate_dependency(self, dependency: str) -> int:
        """Delete the entries indexed under ``dependency``."""
        return self.invalidate_dependencies((dependency,))

    def invalidate_dependencies(self, dependencies: Iterable[str]) -> int:
        """Invalidate several dependencies at once; return the number of entries removed."""
        return int(self._run(self.protocol.invalidate(dependencies, self.announcer)))

    def delete(self, *keys: str) -> int:
        """Delete entries; return how many existed."""
        return int(self._run(self.protocol.delete(keys)))

    def clear(self, pattern: str = "*") -> int:
        """Delete entries whose key matches ``pattern`` (SCAN on every master, then DEL in
        batches)."""
        removed = 0
        batch: list[str] = []
        with backend_errors(self.config):
            for found in self._client().scan_iter(match=self._cache_key(pattern), count=1000):
                batch.append(found.decode()[len(self.protocol.entry_prefix) :])
                if len(batch) >= _BATCH:
                    removed += self.delete(*batch)
                    batch.clear()
        return removed + self.delete(*batch)

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a valid entry."""
        return self.lookup(key)[0] is not None

    def ttl(self, key: str) -> int:
        """Seconds left: -1 without expiry, -2 when missing."""
        return int(self._run(self.protocol.ttl(key)))

    def acquire_lock(self, key: str, ttl: float) -> str | None:
        """See CacheBackend.acquire_lock (``protocols/locks.py``)."""
        return cast("str | None", self._run(self.protocol._acquire_steps(key, ttl)))

    def release_lock(self, key: str, token: str) -> None:
        """See CacheBackend.release_lock."""
        self._run(self.protocol._release_steps(key, token))

    def _client(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        """Stop watching the deployment (when no other backend does)."""
        if self.watch is not None:
            self.watch.unwatch(self.prefix)
            self.watch = None


class AsyncRedisBackend(_Watched, AsyncCacheBackend):
    """An asynchronous backend running ``protocol``; never blocks the event loop.

    asyncio connections belong to the loop that opened them, so subclasses keep one client
    (and runner) per running loop (:class:`~depcache.backends.loops.PerLoop`).
    """

    guards_stale_sets = True
    config: RedisConfig

    def __init__(self, config: RedisConfig, protocol: Protocol) -> None:
        super().__init__(config)
        self.config = config
        self.protocol = protocol
        self.watch = watch_for(config)

    def _runner_now(self) -> AsyncRunner:
        raise NotImplementedError

    async def _run(self, steps: Steps) -> Any:
        with backend_errors(self.config):
            return await arun_steps(self._runner_now(), steps)

    async def lookup(self, key: str) -> tuple[Blob | None, int | None]:
        """See RedisBackend.lookup."""
        steps = self.protocol.lookup(key, self._floor())
        return cast("tuple[Blob | None, int | None]", await self._run(steps))

    async def store(
        self,
        key: str,
        value: Blob,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> bool:
        """See RedisBackend.store."""
        if not self._polled() and self.watch is not None:
            await asyncio.to_thread(self.watch.wait_polled, _FIRST_POLL_WAIT)
        steps = self.protocol.store(key, value, ttl, dependencies, epoch, self._may_evict())
        return bool(await self._run(steps))

    async def set(
        self,
        key: str,
        value: Blob,
        ttl: float | None = None,
        dependencies: Iterable[str] | None = None,
    ) -> None:
        """Store and index unconditionally."""
        await self.store(key, value, ttl, dependencies or (), None)

    async def check(self, epoch: int, dependencies: Iterable[str]) -> bool:
        """See RedisBackend.check."""
        return bool(await self._run(self.protocol.check(epoch, dependencies, self._floor())))

    async def get(self, key: str) -> Blob | None:
        """See RedisBackend.get."""
        return (await self.lookup(key))[0]

    async def invalidate_dependency(self, dependency: str) -> int:
        """Delete the entries indexed under ``dependency``."""
        return await self.invalidate_dependencies((dependency,))

    async def invalidate_dependencies(self, dependencies: Iterable[str]) -> int:
        """See RedisBackend.invalidate_dependencies."""
        return int(await self._run(self.protocol.invalidate(dependencies, self.announcer)))

    async def delete(self, *keys: str) -> int:
        """Delete entries; return how many existed."""
        return int(await self._run(self.protocol.delete(keys)))

    async def clear(self, pattern: str = "*") -> int:
        """See RedisBackend.clear."""
        removed = 0
        batch: list[str] = []
        with backend_errors(self.config):
            async for found in self._client().scan_iter(match=self._cache_key(pattern), count=1000):
                batch.append(found.decode()[len(self.protocol.entry_prefix) :])
                if len(batch) >= _BATCH:
                    removed += await self.delete(*batch)
                    batch.clear()
        return removed + await self.delete(*batch)

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a valid entry."""
        return (await self.lookup(key))[0] is not None

    async def ttl(self, key: str) -> int:
        """Seconds left: -1 without expiry, -2 when missing."""
        return int(await self._run(self.protocol.ttl(key)))

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        """See CacheBackend.acquire_lock (``protocols/locks.py``)."""
        return cast("str | None", await self._run(self.protocol._acquire_steps(key, ttl)))

    async def release_lock(self, key: str, token: str) -> None:
        """See CacheBackend.release_lock."""
        await self._run(self.protocol._release_steps(key, token))

    def _client(self) -> Any:
        raise NotImplementedError


class RedisCacheBackend(RedisBackend):
    """Synchronous backend on a standalone Redis.

    Args:
        config: connection settings; a plain ConfigBase means ``RedisConfig()`` defaults with
            its prefix.
        redis_client: an existing ``redis.Redis`` to use instead of creating one.

    A lookup (the hit path) is one ``EVALSHA``, sent without the step machinery.
    """

    def __init__(self, config: Any = None, redis_client: redis.Redis | None = None) -> None:
        cfg = RedisConfig.from_config(config if config is not None else RedisConfig())
        self.redis = redis_client if redis_client is not None else create_sync_client(cfg)
        protocol = StandaloneProtocol(cfg)
        super().__init__(cfg, protocol, standalone_runner(self.redis))
        self._lookup_reply = protocol.lookup_reply
        self._packed = protocol.lookup_packed()
        self._checkout = QuickCheckout(self.redis.connection_pool)

    def lookup(self, key: str) -> tuple[Blob | None, int | None]:
        """See RedisBackend.lookup: one round trip, written to a pooled connection directly
        (redis-py's command path costs a hit more than the script does: measured)."""
        client = self.redis
        if client.connection is not None:  # a single-connection client: its own path
            return self._lookup_slow(key)
        head, entry_prefix, tail = self._packed
        entry = entry_prefix + key.encode("utf-8", "surrogatepass")
        checkout = self._checkout  # see the standalone runner: QuickCheckout
        try:
            connection, quick = checkout.acquire()
        except REDIS_ERRORS as exc:
            raise backend_error(self.config, exc) from exc
        slow = False
        clean = False  # the reply was read: nothing is left on the connection
        try:
            connection.send_packed_command((head + b"$%d\r\n%s\r\n" % (len(entry), entry) + tail,))
            reply = connection.read_response()
            clean = True
        except redis.exceptions.NoScriptError:
            clean = slow = True  # the server lacks the script: the slow path loads it
        except redis.exceptions.ResponseError as exc:
            clean = True
            raise backend_error(self.config, exc) from exc
        except REDIS_ERRORS as exc:
            if isinstance(exc, redis.exceptions.TimeoutError):
                raise backend_error(self.config, exc) from exc
            slow = True  # a broken connection: redis-py reconnects
        finally:
            # before the slow path: the pool may hold one connection only
            checkout.finish(connection, quick=quick, clean=clean)
        if slow:
            return self._lookup_slow(key)
        return self._lookup_reply(key, reply)

    def _lookup_slow(self, key: str) -> tuple[Blob | None, int | None]:
        steps = self.protocol.lookup(key, self._floor())
        return cast("tuple[Blob | None, int | None]", self._run(steps))

    def _client(self) -> redis.Redis:
        return self.redis

    def close(self) -> None:
        """Close the connection pool (and stop watching the server, if no one else does)."""
        super().close()
        self.redis.close()


class AsyncRedisCacheBackend(AsyncRedisBackend):
    """Asynchronous backend on a standalone Redis (one client per running event loop)."""

    def __init__(self, config: Any = None) -> None:
        cfg = RedisConfig.from_config(config if config is not None else RedisConfig())
        protocol = StandaloneProtocol(cfg)
        super().__init__(cfg, protocol)
        self._clients = PerLoop(lambda: create_async_client(cfg))
        self._lookup_reply = protocol.lookup_reply
        self._packed = protocol.lookup_packed()

    @property
    def redis(self) -> aioredis.Redis:
        """The client of the running event loop."""
        return self._clients.get()

    async def lookup(self, key: str) -> tuple[Blob | None, int | None]:
        """See RedisCacheBackend.lookup."""
        client: Any = self._clients.get()
        pool = client.connection_pool
        if client.connection is not None:
            return await self._lookup_slow(key)
        head, entry_prefix, tail = self._packed
        entry = entry_prefix + key.encode("utf-8", "surrogatepass")
        try:
            connection = await pool.get_connection()
        except REDIS_ERRORS as exc:
            raise backend_error(self.config, exc) from exc
        slow = False
        try:
            await connection.send_packed_command(
                (head + b"$%d\r\n%s\r\n" % (len(entry), entry) + tail,)
            )
            reply = await connection.read_response()
        except redis.exceptions.NoScriptError:
            slow = True
        except redis.exceptions.ResponseError as exc:
            raise backend_error(self.config, exc) from exc
        except REDIS_ERRORS as exc:
            await connection.disconnect()
            if isinstance(exc, redis.exceptions.TimeoutError):
                raise backend_error(self.config, exc) from exc
            slow = True
        finally:
            await pool.release(connection)
        if slow:
            return await self._lookup_slow(key)
        return self._lookup_reply(key, reply)

    async def _lookup_slow(self, key: str) -> tuple[Blob | None, int | None]:
        steps = self.protocol.lookup(key, self._floor())
        return cast("tuple[Blob | None, int | None]", await self._run(steps))

    def _runner_now(self) -> AsyncRunner:
        return async_standalone_runner(self._clients.get())

    def _client(self) -> aioredis.Redis:
        return self._clients.get()

    async def close(self) -> None:
        """Close the client of the running loop."""
        await self._clients.close()
