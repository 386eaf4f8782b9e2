"""The seed README's promises on manual operations, over memory and Redis, sync and async."""

from __future__ import annotations

import pytest

import depcache
from depcache import ConfigBase, cache_with_deps
from tests.support.helpers import Calls, op


async def test_manual_operations(manager: depcache.CacheManager, mode: str) -> None:
    assert await op(manager, mode, "get", "missing") is None
    assert await op(manager, mode, "get", "missing", default=5) == 5
    assert await op(manager, mode, "exists", "missing") is False
    assert await op(manager, mode, "ttl", "missing") == -2

    await op(manager, mode, "set", "key", {"a": (1, 2)}, ttl=100, dependencies={"dep1"})
    assert await op(manager, mode, "get", "key") == {"a": (1, 2)}
    assert await op(manager, mode, "exists", "key") is True
    assert 95 <= await op(manager, mode, "ttl", "key") <= 100

    await op(manager, mode, "set", "none", None)
    assert await op(manager, mode, "exists", "none") is True
    assert await op(manager, mode, "get", "none", default="default") is None
    assert await op(manager, mode, "ttl", "none") == -1

    assert await op(manager, mode, "invalidate_dependency", "dep1") == 1
    assert await op(manager, mode, "exists", "key") is False
    assert await op(manager, mode, "get", "key") is None

    await op(manager, mode, "set", "a", 1)
    await op(manager, mode, "set", "b", 2)
    assert await op(manager, mode, "delete", "a", "b", "c") == 2
    assert await op(manager, mode, "delete", "a") == 0

    await op(manager, mode, "set", "user:1", 1)
    await op(manager, mode, "set", "user:2", 2)
    await op(manager, mode, "set", "post:1", 3)
    assert await op(manager, mode, "clear", "user:*") == 2
    assert await op(manager, mode, "get", "post:1") == 3
    assert await op(manager, mode, "clear") == 2  # "none" and "post:1"
    assert await op(manager, mode, "exists", "post:1") is False


def test_manager_attributes(manager: depcache.CacheManager, prefix: str) -> None:
    assert manager.name == prefix
    assert manager.prefix == prefix
    assert manager.config.prefix == prefix
    assert manager.enabled is True
    assert depcache.get_or_create_cache_manager(name=prefix) is manager


def test_direct_constructor_does_not_register(prefix: str) -> None:
    config = ConfigBase(prefix=prefix)
    direct = depcache.CacheManager(
        config=config, name=prefix, backend=depcache.FakeCacheBackend(config)
    )
    direct.set("k", 1)
    assert direct.get("k") == 1
    assert prefix not in depcache.registered_managers()
    registered = depcache.get_or_create_cache_manager(
        name=prefix, config=config, backend=depcache.FakeCacheBackend(config)
    )
    assert registered is not direct
    assert depcache.get_or_create_cache_manager(name=prefix) is registered


@pytest.mark.redis
async def test_sync_and_async_share_one_redis_store(redis_manager: depcache.CacheManager) -> None:
    calls = Calls()

    @cache_with_deps(cache_manager=redis_manager, dependencies=["shared"])
    def sync_f() -> str:
        calls("sync")
        return "s"

    @cache_with_deps(cache_manager=redis_manager, dependencies=["shared"])
    async def async_f() -> str:
        calls("async")
        return "a"

    redis_manager.set("k", [1])
    assert await redis_manager.aget("k") == [1]
    assert sync_f() == "s"
    assert await async_f() == "a"
    assert redis_manager.invalidate_dependency("shared") == 2
    assert await async_f() == "a"
    assert sync_f() == "s"
    assert await redis_manager.ainvalidate_dependency("shared") == 2
    assert calls.count == 4
