"""Storage backends: the interface, the in-memory backends and the Redis backends."""

from __future__ import annotations

from .base import AsyncCacheBackend, CacheBackend
from .cluster import AsyncRedisClusterCacheBackend, RedisClusterCacheBackend
from .memory import FakeAsyncCacheBackend, FakeCacheBackend, MemoryStore
from .redis_backend import AsyncRedisCacheBackend, RedisCacheBackend

__all__ = [
    "AsyncCacheBackend",
    "AsyncRedisCacheBackend",
    "AsyncRedisClusterCacheBackend",
    "CacheBackend",
    "FakeAsyncCacheBackend",
    "FakeCacheBackend",
    "MemoryStore",
    "RedisCacheBackend",
    "RedisClusterCacheBackend",
]
