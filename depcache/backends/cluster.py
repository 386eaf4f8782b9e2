"""Redis Cluster backends (sync and async): the cluster protocol (``protocols/cluster.py``) run
on the cluster fast path (``cluster_runner.py``).

Round trips: a hit 2 (the entry, then its dependencies' markers and the floor), a miss plus
store 3, an invalidation 4, whatever the number of dependencies or entries.
"""

from __future__ import annotations

import threading
from typing import Any

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from ..config import RedisConfig
from .cluster_client import create_async_cluster_client, create_cluster_client
from .cluster_runner import AsyncClusterRunner, ClusterRunner
from .loops import PerLoop
from .protocols import ClusterProtocol
from .redis_backend import AsyncRedisBackend, RedisBackend
from .runners import AsyncRunner, Runner

__all__ = [
    "AsyncRedisClusterCacheBackend",
    "RedisClusterCacheBackend",
    "create_async_cluster_client",
    "create_cluster_client",
]


class RedisClusterCacheBackend(RedisBackend):
    """Synchronous Redis Cluster backend (``RedisConfig(url=..., cluster=True)``).

    The cluster is connected on first use (a cluster that is down does not stop the manager
    from being created). Every method raises :class:`~depcache.errors.BackendError` when the
    cluster fails.
    """

    def __init__(self, config: Any = None, redis_client: RedisCluster | None = None) -> None:
        cfg = RedisConfig.from_config(config if config is not None else RedisConfig(cluster=True))
        super().__init__(cfg, ClusterProtocol(cfg), None)
        self._redis = redis_client
        self._lock = threading.Lock()

    @property
    def redis(self) -> RedisCluster:
        """The cluster client, connected on first use."""
        self._runner_now()
        assert self._redis is not None
        return self._redis

    def _runner_now(self) -> Runner:
        if self._runner is None:
            with self._lock:
                if self._runner is None:
                    if self._redis is None:
                        self._redis = create_cluster_client(self.config)
                    self._runner = ClusterRunner(self._redis, self.config.max_connections)
        return self._runner

    def _client(self) -> RedisCluster:
        return self.redis

    def close(self) -> None:
        """Close every node connection (and stop watching the cluster, if no one else does)."""
        super().close()
        if self._redis is not None:
            self._redis.close()


class _LoopCluster:
    """An asyncio cluster client for one loop, and its runner."""

    __slots__ = ("client", "runner")

    def __init__(self, config: RedisConfig) -> None:
        self.client = create_async_cluster_client(config)
        self.runner = AsyncClusterRunner(self.client, config.max_connections)

    async def aclose(self) -> None:
        await self.client.aclose()


class AsyncRedisClusterCacheBackend(AsyncRedisBackend):
    """Asynchronous Redis Cluster backend; one client per running event loop."""

    def __init__(self, config: Any = None) -> None:
        cfg = RedisConfig.from_config(config if config is not None else RedisConfig(cluster=True))
        super().__init__(cfg, ClusterProtocol(cfg))
        self._clients = PerLoop(lambda: _LoopCluster(cfg))

    def _runner_now(self) -> AsyncRunner:
        return self._clients.get().runner

    def _client(self) -> AsyncRedisCluster:
        return self._clients.get().client

    async def close(self) -> None:
        """Close the client of the running loop."""
        await self._clients.close()
