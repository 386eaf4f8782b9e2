"""Building backends from configuration, and pairing a sync backend with an async one."""

from __future__ import annotations

from typing import Any

from .backends.adapters import AsyncOnlyBackend, ThreadedAsyncBackend
from .backends.base import AsyncCacheBackend, CacheBackend
from .backends.cluster import AsyncRedisClusterCacheBackend, RedisClusterCacheBackend
from .backends.memory import FakeAsyncCacheBackend, FakeCacheBackend
from .backends.redis_backend import AsyncRedisCacheBackend, RedisCacheBackend
from .config import ConfigBase, RedisConfig, load_class
from .errors import ConfigError

__all__ = [
    "create_async_redis_backend",
    "create_redis_backend",
    "pair_backends",
]


def create_redis_backend(config: RedisConfig | None = None) -> CacheBackend:
    """A sync Redis backend for ``config`` (default: ``RedisConfig()`` from the environment):
    :class:`RedisClusterCacheBackend` when ``config.cluster``, else :class:`RedisCacheBackend`."""
    config = config or RedisConfig()
    return RedisClusterCacheBackend(config) if config.cluster else RedisCacheBackend(config)


def create_async_redis_backend(config: RedisConfig | None = None) -> AsyncCacheBackend:
    """An async Redis backend for ``config`` (default: ``RedisConfig()``), cluster or not."""
    config = config or RedisConfig()
    if config.cluster:
        return AsyncRedisClusterCacheBackend(config)
    return AsyncRedisCacheBackend(config)


def _load_backend(path: str, setting: str, base: type, config: ConfigBase) -> object:
    cls: Any = load_class(path, setting=setting)
    if not issubclass(cls, base):
        raise ConfigError(f"{setting}={path!r} is not a depcache.{base.__name__}")
    return cls(config)


def _sync_from_config(config: ConfigBase) -> CacheBackend:
    if config.cache_backend_class:
        backend = _load_backend(
            config.cache_backend_class, "DEP_CACHE_BACKEND_CLASS", CacheBackend, config
        )
        assert isinstance(backend, CacheBackend)
        return backend
    if config.backend == "memory":
        return FakeCacheBackend(config)
    return create_redis_backend(RedisConfig.from_config(config))


def _async_for(config: ConfigBase, sync: CacheBackend) -> AsyncCacheBackend:
    if config.async_cache_backend_class:
        backend = _load_backend(
            config.async_cache_backend_class,
            "DEP_CACHE_ASYNC_BACKEND_CLASS",
            AsyncCacheBackend,
            config,
        )
        assert isinstance(backend, AsyncCacheBackend)
        return backend
    if isinstance(sync, FakeCacheBackend):
        return FakeAsyncCacheBackend(sync.config, store=sync.store_data)
    if isinstance(sync, RedisCacheBackend):
        return AsyncRedisCacheBackend(sync.config)
    if isinstance(sync, RedisClusterCacheBackend):
        return AsyncRedisClusterCacheBackend(sync.config)
    return ThreadedAsyncBackend(sync)


def _sync_for(async_backend: AsyncCacheBackend) -> CacheBackend:
    if isinstance(async_backend, FakeAsyncCacheBackend):
        return FakeCacheBackend(async_backend.config, store=async_backend.store_data)
    if isinstance(async_backend, AsyncRedisCacheBackend):
        return RedisCacheBackend(async_backend.config)
    if isinstance(async_backend, AsyncRedisClusterCacheBackend):
        return RedisClusterCacheBackend(async_backend.config)
    return AsyncOnlyBackend(async_backend)


def pair_backends(
    config: ConfigBase,
    backend: CacheBackend | None,
    async_backend: AsyncCacheBackend | None,
) -> tuple[CacheBackend, AsyncCacheBackend]:
    """Return a (sync, async) pair over one store, built from whatever was supplied.

    Raises:
        ConfigError: a configured backend class cannot be loaded.
    """
    if backend is not None and not isinstance(backend, CacheBackend):
        raise TypeError(f"backend must be a depcache.CacheBackend, got {type(backend).__name__}")
    if async_backend is not None and not isinstance(async_backend, AsyncCacheBackend):
        raise TypeError(
            "async_backend must be a depcache.AsyncCacheBackend, "
            f"got {type(async_backend).__name__}"
        )
    if backend is None and async_backend is None:
        backend = _sync_from_config(config)
    if backend is None:
        assert async_backend is not None
        return _sync_for(async_backend), async_backend
    if async_backend is None:
        async_backend = _async_for(config, backend)
    return backend, async_backend
