"""Creating redis-py clients from a RedisConfig, and turning their errors into BackendError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisClusterException

from ..config import RedisConfig
from ..errors import BackendError, ConfigError

__all__ = ["backend_errors", "create_async_client", "create_sync_client"]


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
            config.url, max_connections=config.max_connections, **options
        )
        return redis.Redis(connection_pool=pool)
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
        return aioredis.Redis(connection_pool=pool)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis settings for {config.safe_url}: {exc}") from None


@contextmanager
def backend_errors(config: RedisConfig) -> Iterator[None]:
    """Re-raise redis-py and socket errors as BackendError naming the server (no password)."""
    try:
        yield
    except (redis.RedisError, RedisClusterException, OSError) as exc:
        raise BackendError(
            f"Redis at {config.safe_url} failed: {type(exc).__name__}: {exc}"
        ) from exc
