"""The seed README's promises on context helpers, over memory and Redis, sync and async."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.asyncio

import depcache
from depcache import (
    add_dependency,
    cache_with_deps,
    current_cache_key,
    get_cache_manager,
    set_cache_ttl,
)
from tests.support.helpers import Calls, cached, call, entry_keys


def test_context_helpers_outside_a_cached_call() -> None:
    add_dependency("nothing")
    set_cache_ttl(10)
    assert current_cache_key() is None
    assert get_cache_manager() is None


async def test_context_helpers_inside_a_cached_call(
    manager: depcache.CacheManager, mode: str
) -> None:
    seen: list[Any] = []

    @cached(mode, cache_manager=manager)
    def f() -> int:
        seen.append((current_cache_key(), get_cache_manager()))
        return 1

    await call(f)
    assert len(seen) == 1
    key, seen_manager = seen[0]
    assert isinstance(key, str)
    assert seen_manager is manager
    assert current_cache_key() is None
    assert get_cache_manager() is None


def test_wrapper_metadata(manager: depcache.CacheManager) -> None:
    def original(x: int) -> int:
        """Docstring."""
        return x

    wrapped = cache_with_deps(cache_manager=manager)(original)
    assert wrapped.__wrapped__ is original
    assert wrapped.__name__ == "original"
    assert wrapped.__doc__ == "Docstring."
    assert depcache.async_cache_with_deps is not None


async def test_async_cache_with_deps_alias(manager: depcache.CacheManager) -> None:
    calls = Calls()

    @depcache.async_cache_with_deps(cache_manager=manager)
    async def f() -> int:
        calls()
        return 1

    assert await f() == 1
    assert await f() == 1
    assert calls.count == 1


def test_default_manager_from_environment(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("DEP_CACHE_BACKEND", "memory")
    monkeypatch.setenv("DEP_CACHE_PREFIX", prefix)
    calls = Calls()
    managers: list[Any] = []

    @cache_with_deps()
    def f() -> int:
        calls()
        managers.append(get_cache_manager())
        return 1

    assert f() == 1
    assert f() == 1
    assert calls.count == 1
    assert managers[0].prefix == prefix
    assert managers[0].name == prefix


@pytest.mark.redis
def test_default_redis_manager_from_environment(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    monkeypatch.delenv("DEP_CACHE_BACKEND", raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DEP_CACHE_PREFIX", prefix)
    manager = depcache.get_or_create_cache_manager()
    assert manager.name == prefix
    calls = Calls()
    managers: list[Any] = []

    @cache_with_deps()
    def f() -> int:
        calls()
        managers.append(get_cache_manager())
        return 1

    assert f() == 1
    assert f() == 1
    assert calls.count == 1
    assert managers == [manager]
    assert len(entry_keys(redis_client, prefix)) == 1
