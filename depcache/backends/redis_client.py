"""redis-py clients from a RedisConfig, running our Lua scripts, and errors as BackendError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from queue import Full, LifoQueue
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisClusterException

from ..config import RedisConfig
from ..errors import BackendError, ConfigError

__all__ = [
    "REDIS_ERRORS",
    "backend_error",
    "backend_errors",
    "create_async_client",
    "create_sync_client",
]


class _ConnectionStack(LifoQueue[Any]):
    """The idle connections of a sync blocking pool, with a fast path when none must wait.

    ``BlockingConnectionPool`` takes a connection with ``get`` and returns it with
    ``put_nowait``; a plain LifoQueue runs its Condition machinery both times, about a
    microsecond per command. Here an available connection is taken, and one is returned,
    under the queue's mutex alone; waiting for a connection (the pool exhausted) and waking
    a waiter are LifoQueue's own.
    """

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        with self.mutex:
            if self.queue:
                return self.queue.pop()  # nobody waits in put(): the pool only puts _nowait
        return super().get(block, timeout)

    def put_nowait(self, item: Any) -> None:
        with self.mutex:
            if 0 < self.maxsize <= len(self.queue):
                raise Full
            self.queue.append(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()  # a caller may be waiting in get() for a connection


def _options(config: RedisConfig) -> dict[str, Any]:
    options: dict[str, Any] = dict(config.additional_connection_kwargs)
    if config.socket_timeout is not None:
        options.setdefault("socket_timeout", config.socket_timeout)
        options.setdefault("socket_connect_timeout", config.socket_timeout)
    return options


def _check_standalone(config: RedisConfig) -> None:
    if config.cluster:
        raise ConfigError(
            f"RedisConfig(cluster=True) for {config.safe_url} needs the cluster backends "
            "(RedisClusterCacheBackend, chosen automatically by CacheManager)"
        )


def create_sync_client(config: RedisConfig) -> redis.Redis:
    """A redis-py client for ``config``.

    The pool is a blocking one: when all ``max_connections`` are busy, callers wait for one
    rather than fail. Raises ConfigError for settings redis-py rejects.
    """
    _check_standalone(config)
    options = _options(config)
    try:
        pool = redis.BlockingConnectionPool.from_url(
            config.url,
            max_connections=config.max_connections,
            queue_class=_ConnectionStack,
            **options,
        )
        return redis.Redis.from_pool(pool)  # the client owns the pool: close() closes it
    except ValueError as exc:
        raise ConfigError(f"invalid Redis settings for {config.safe_url}: {exc}") from None


def create_async_client(config: RedisConfig) -> aioredis.Redis:
    """An asyncio redis-py client for ``config`` (see :func:`create_sync_client`)."""
    _check_standalone(config)
    options = _options(config)
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            config.url, max_connections=config.max_connections, **options
        )
        return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
    except ValueError as exc:
        raise ConfigError(f"invalid Redis settings for {config.safe_url}: {exc}") from None


#: what redis-py raises when Redis fails (the errors :func:`backend_errors` converts)
REDIS_ERRORS = (redis.RedisError, RedisClusterException, OSError)


def backend_error(config: RedisConfig, exc: BaseException) -> BackendError:
    """The BackendError for ``exc``, naming the server (never the password)."""
    return BackendError(f"Redis at {config.safe_url} failed: {type(exc).__name__}: {exc}")


@contextmanager
def backend_errors(config: RedisConfig) -> Iterator[None]:
    """Re-raise redis-py and socket errors as BackendError naming the server (no password).

    (The hit path catches :data:`REDIS_ERRORS` itself: a generator-based context manager costs
    about a microsecond per use.)"""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise backend_error(config, exc) from exc
