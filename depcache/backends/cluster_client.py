"""Redis Cluster clients (sync and asyncio) from a RedisConfig.

A cluster call must give up about as soon as a call on a single server does, also when a
master hangs (it accepts connections but never answers: a stopped process, a network that
drops packets). redis-py's defaults do not: its cluster clients retry three times with a
growing backoff, refreshing the topology in between, and its sync pipeline sends each
command that failed on a node again, alone, waiting for each. With ``socket_timeout=1`` a
master paused for six seconds held every call whose key lived on it for the whole pause.

What bounds a cluster operation here:

- a connection, and every reply, waits at most ``socket_timeout`` (``socket_connect_timeout``
  is set to it too);
- a command or a batch that fails on a node (a timeout, a lost connection, CLUSTERDOWN) is
  not retried (``retry``: none), as redis-py does not retry a timeout on a single server
  either. The failure makes redis-py refresh the topology on a later command, at most once
  a second (a node that failed to connect is asked last); so a call after a completed
  failover reaches the new master, while the call that met the failover fails;
- the cluster runners (``cluster_runner.py``) write a batch to each node at once and do not
  send failed commands again one by one (so a batch with N commands for a hung node waits
  once, not N + 1 times); commands redirected by MOVED or ASK (a slot that moved) are sent
  again, to the new owner, through redis-py.

So a failing operation returns or raises after about one ``socket_timeout``, plus a topology
refresh when one is due (which waits for a hung node only when it happens to ask that one
first: it stops at the first node that answers).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from ..config import RedisConfig
from ..errors import ConfigError
from .redis_client import backend_errors

__all__ = ["CLUSTER_RETRIES", "create_async_cluster_client", "create_cluster_client"]

#: how many times a failed cluster command or batch is tried again: none (see above)
CLUSTER_RETRIES = 0


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
    A ``retry`` in ``additional_connection_kwargs`` replaces the bounded one of this module.
    """
    options = _cluster_options(config)
    options.setdefault("retry", Retry(NoBackoff(), CLUSTER_RETRIES))
    try:
        with backend_errors(config):
            return RedisCluster.from_url(config.url, **options)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis Cluster settings for {config.safe_url}: {exc}") from None


def create_async_cluster_client(config: RedisConfig) -> AsyncRedisCluster:
    """An asyncio RedisCluster client for ``config`` (see :func:`create_cluster_client`)."""
    options = _cluster_options(config)
    options.setdefault("retry", AsyncRetry(NoBackoff(), CLUSTER_RETRIES))
    try:
        return AsyncRedisCluster.from_url(config.url, **options)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis Cluster settings for {config.safe_url}: {exc}") from None
