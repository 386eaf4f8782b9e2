"""Redis Cluster clients (sync and asyncio) from a RedisConfig."""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from ..config import RedisConfig
from ..errors import ConfigError
from .redis_client import backend_errors

__all__ = ["create_async_cluster_client", "create_cluster_client"]


def _cluster_options(config: RedisConfig) -> dict[str, Any]:
    options: dict[str, Any] = dict(config.additional_connection_kwargs)
    if config.socket_timeout is not None:
        options.setdefault("socket_timeout", config.socket_timeout)
        options.setdefault("socket_connect_timeout", config.socket_timeout)
    options.setdefault("max_connections", config.max_connections)
    return options


def create_cluster_client(config: RedisConfig) -> RedisCluster:
    """A sync RedisCluster client for ``config`` (any node's URL; the rest is discovered).

    Connects to discover the nodes: raises BackendError when the cluster cannot be reached.
    """
    try:
        with backend_errors(config):
            return RedisCluster.from_url(config.url, **_cluster_options(config))
    except ValueError as exc:
        raise ConfigError(f"invalid Redis Cluster settings for {config.safe_url}: {exc}") from None


def create_async_cluster_client(config: RedisConfig) -> AsyncRedisCluster:
    """An asyncio RedisCluster client for ``config``."""
    try:
        return AsyncRedisCluster.from_url(config.url, **_cluster_options(config))
    except ValueError as exc:
        raise ConfigError(f"invalid Redis Cluster settings for {config.safe_url}: {exc}") from None
