"""depcache: cache function results in Redis and invalidate them by dependency.

The public API keeps every name of simple-dep-cache's README (see README.md, "Migrating").
"""

from __future__ import annotations

from .backends import (
    AsyncCacheBackend,
    AsyncRedisCacheBackend,
    AsyncRedisClusterCacheBackend,
    CacheBackend,
    FakeAsyncCacheBackend,
    FakeCacheBackend,
    RedisCacheBackend,
    RedisClusterCacheBackend,
)
from .call._context import (
    add_dependency,
    current_cache_key,
    get_cache_manager,
    mark_uncacheable,
    set_cache_ttl,
)
from .call._decorator import async_cache_with_deps, cache_with_deps
from .config import ConfigBase, RedisConfig
from .errors import (
    BackendError,
    ConfigError,
    ConfigWarning,
    DepCacheError,
    InvalidationError,
    SerializationError,
    UnknownManagerError,
)
from .events import CacheEvent, CacheEventType, StatsCollector
from .factories import create_async_redis_backend, create_redis_backend
from .manager import CacheManager
from .registry import (
    InvalidationReport,
    ainvalidate,
    get_or_create_cache_manager,
    invalidate,
    registered_managers,
)
from .serializers import BaseSerializer, JSONSerializer, SignedPickleSerializer

__version__ = "0.1.0"

__all__ = [
    "AsyncCacheBackend",
    "AsyncRedisCacheBackend",
    "AsyncRedisClusterCacheBackend",
    "BackendError",
    "BaseSerializer",
    "CacheBackend",
    "CacheEvent",
    "CacheEventType",
    "CacheManager",
    "ConfigBase",
    "ConfigError",
    "ConfigWarning",
    "DepCacheError",
    "FakeAsyncCacheBackend",
    "FakeCacheBackend",
    "InvalidationError",
    "InvalidationReport",
    "JSONSerializer",
    "RedisCacheBackend",
    "RedisClusterCacheBackend",
    "RedisConfig",
    "SerializationError",
    "SignedPickleSerializer",
    "StatsCollector",
    "UnknownManagerError",
    "__version__",
    "add_dependency",
    "ainvalidate",
    "async_cache_with_deps",
    "cache_with_deps",
    "create_async_redis_backend",
    "create_redis_backend",
    "current_cache_key",
    "get_cache_manager",
    "get_or_create_cache_manager",
    "invalidate",
    "mark_uncacheable",
    "registered_managers",
    "set_cache_ttl",
]
