"""Concurrency: many async calls, per-task and per-thread tracking, cancellation, stale sets."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import redis.client

import depcache
from depcache import add_dependency, cache_with_deps, current_cache_key
from tests.support.helpers import Calls, entry_keys

# --- many concurrent calls ------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize("max_connections", [None, 4])
async def test_500_concurrent_async_calls(
    redis_url: str, redis_client: redis.Redis, prefix: str, max_connections: int | None
) -> None:
    redis_manager = depcache.get_or_create_cache_manager(
        name=prefix,
        config=depcache.RedisConfig(url=redis_url, prefix=prefix, max_connections=max_connections),
    )
    calls = Calls()

    @cache_with_deps(cache_manager=redis_manager, dependencies=["many"])
    async def square(x: int) -> int:
        calls(x)
        await asyncio.sleep(0.01)
        add_dependency(f"x:{x}")
        return x * x

    expected = [i * i for i in range(500)]
    assert await asyncio.gather(*(square(i) for i in range(500))) == expected
    assert calls.count == 500
    assert len(entry_keys(redis_client, prefix)) == 500

    assert await asyncio.gather(*(square(i) for i in range(500))) == expected  # all hits
    assert calls.count == 500

    assert await redis_manager.ainvalidate_dependency("x:7") == 1
    assert await redis_manager.ainvalidate_dependency("many") == 499
    assert entry_keys(redis_client, prefix) == []


def test_many_threads_share_one_manager(manager: depcache.CacheManager) -> None:
    calls = Calls()
    lock = threading.Lock()

    @cache_with_deps(cache_manager=manager)
    def f(x: int) -> int:
        with lock:
            calls(x)
        add_dependency(f"x:{x % 10}")
        return -x

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(f, range(400))) == [-x for x in range(400)]
        assert list(pool.map(f, range(400))) == [-x for x in range(400)]
    assert calls.count == 400
    assert manager.invalidate_dependency("x:3") == 40
    assert manager.invalidate_dependencies(*(f"x:{i}" for i in range(10))) == 360


@pytest.mark.redis
async def test_async_calls_do_not_use_the_sync_client(
    redis_manager: depcache.CacheManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    def blocking(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sync Redis client was used from an async call")

    monkeypatch.setattr(redis.Redis, "execute_command", blocking)
    monkeypatch.setattr(redis.client.Pipeline, "execute", blocking)
    calls = Calls()

    @cache_with_deps(cache_manager=redis_manager, dependencies=["d"])
    async def f() -> int:
        calls()
        return 1

    assert await f() == 1
    assert await f() == 1
    assert calls.count == 1
    assert await redis_manager.ainvalidate_dependency("d") == 1


@pytest.mark.redis
async def test_close_and_aclose_release_every_connection(
    redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    client_name = f"{prefix}-conn"
    separator = "&" if "?" in redis_url else "?"
    url = f"{redis_url}{separator}client_name={client_name}"
    manager = depcache.CacheManager(config=depcache.RedisConfig(url=url, prefix=prefix))

    def open_connections() -> int:
        return sum(1 for c in redis_client.client_list() if c.get("name") == client_name)

    @cache_with_deps(cache_manager=manager)
    async def af(x: int) -> int:
        await asyncio.sleep(0.01)
        return x

    @cache_with_deps(cache_manager=manager)
    def f(x: int) -> int:
        return x

    await asyncio.gather(*(af(i) for i in range(20)))  # several pooled async connections
    assert f(1) == 1
    assert open_connections() >= 2
    # Keep the pools, to disconnect them whatever happens (leaks would fail later tests).
    async_pool = manager.async_backend.redis.connection_pool
    sync_pool = manager.backend.redis.connection_pool
    try:
        await manager.aclose()
        manager.close()
        for _ in range(50):
            if open_connections() == 0:
                break
            await asyncio.sleep(0.02)
        assert open_connections() == 0
    finally:
        await async_pool.disconnect()
        sync_pool.disconnect()


# --- dependency tracking is per task and per thread -----------------------------------------------


async def test_dependency_tracking_is_isolated_per_task(manager: depcache.CacheManager) -> None:
    barrier = asyncio.Barrier(2)

    @cache_with_deps(cache_manager=manager)
    async def f(name: str) -> str:
        add_dependency(f"first:{name}")
        await asyncio.wait_for(barrier.wait(), 5)  # both computations are in flight
        add_dependency(f"second:{name}")
        await asyncio.wait_for(barrier.wait(), 5)
        return name

    assert await asyncio.gather(f("a"), f("b")) == ["a", "b"]
    assert await manager.ainvalidate_dependency("first:a") == 1
    assert await manager.ainvalidate_dependency("second:a") == 0
    assert await manager.ainvalidate_dependency("second:b") == 1
    assert await manager.ainvalidate_dependency("first:b") == 0


def test_dependency_tracking_is_isolated_per_thread(manager: depcache.CacheManager) -> None:
    barrier = threading.Barrier(2, timeout=5)

    @cache_with_deps(cache_manager=manager)
    def f(name: str) -> str:
        add_dependency(f"first:{name}")
        barrier.wait()  # both computations are in flight
        add_dependency(f"second:{name}")
        barrier.wait()
        return name

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(f, ["a", "b"])) == ["a", "b"]
    assert manager.invalidate_dependency("first:a") == 1
    assert manager.invalidate_dependency("second:a") == 0
    assert manager.invalidate_dependency("second:b") == 1
    assert manager.invalidate_dependency("first:b") == 0


async def test_gathered_inner_calls_reach_the_outer_call(manager: depcache.CacheManager) -> None:
    outer_calls = Calls()

    @cache_with_deps(cache_manager=manager)
    async def inner(x: int) -> int:
        add_dependency(f"item:{x}")
        await asyncio.sleep(0)
        return x

    @cache_with_deps(cache_manager=manager)
    async def outer() -> list[int]:
        outer_calls()
        return list(await asyncio.gather(inner(1), inner(2)))

    assert await outer() == [1, 2]
    assert await outer() == [1, 2]
    assert outer_calls.count == 1
    assert await manager.ainvalidate_dependency("item:2") == 2
    assert await outer() == [1, 2]
    assert outer_calls.count == 2


# --- cancellation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("listed", [None, [Exception]], ids=["plain", "caching-Exception"])
async def test_cancelled_call_caches_nothing(
    manager: depcache.CacheManager, listed: list[type[Exception]] | None
) -> None:
    calls = Calls()
    keys: list[str | None] = []
    started = asyncio.Event()

    @cache_with_deps(cache_manager=manager, dependencies=["c"], cache_exception_types=listed)
    async def f(x: int) -> int:
        calls(x)
        keys.append(current_cache_key())
        if calls.count == 1:
            started.set()
            await asyncio.Event().wait()  # until cancelled
        return x

    task = asyncio.create_task(f(1))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert keys[0] is not None
    assert await manager.aexists(keys[0]) is False
    assert current_cache_key() is None

    assert await f(1) == 1
    assert await f(1) == 1
    assert calls.count == 2
    assert await manager.ainvalidate_dependency("c") == 1


async def test_timed_out_call_caches_nothing(manager: depcache.CacheManager) -> None:
    calls = Calls()
    started = asyncio.Event()

    @cache_with_deps(cache_manager=manager)
    async def f() -> str:
        calls()
        if not started.is_set():
            started.set()
            await asyncio.sleep(10)
        return "done"

    await manager.aexists("warm-up")  # connect first, so that the timeout hits the function
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(f(), 0.5)
    assert started.is_set()
    assert await f() == "done"
    assert await f() == "done"
    assert calls.count == 2


# --- an invalidation that completes during a computation (stale-set guard) ------------------------

GUARD_CASES = [
    pytest.param("row", "before", False, id="dep-added-before-invalidation"),
    pytest.param("row", "after", False, id="dep-added-after-invalidation"),
    pytest.param("unrelated", "before", True, id="unrelated-invalidation"),
]


@pytest.mark.parametrize(("invalidated_dep", "dep_added", "stored"), GUARD_CASES)
async def test_async_invalidation_during_computation_is_not_stored(
    manager: depcache.CacheManager, invalidated_dep: str, dep_added: str, stored: bool
) -> None:
    calls = Calls()
    computing, invalidated = asyncio.Event(), asyncio.Event()

    @cache_with_deps(cache_manager=manager)
    async def f() -> int:
        calls()
        if dep_added == "before":
            add_dependency("row")
        if calls.count == 1:
            computing.set()
            await asyncio.wait_for(invalidated.wait(), 5)
        if dep_added == "after":
            add_dependency("row")
        return calls.count

    task = asyncio.create_task(f())
    await asyncio.wait_for(computing.wait(), 5)
    assert await manager.ainvalidate_dependency(invalidated_dep) == 0  # nothing stored yet
    invalidated.set()
    assert await task == 1  # the caller still gets its result

    expected_next = 1 if stored else 2
    assert await f() == expected_next
    assert await f() == expected_next
    assert calls.count == expected_next


@pytest.mark.parametrize(("invalidated_dep", "dep_added", "stored"), GUARD_CASES)
def test_sync_invalidation_during_computation_is_not_stored(
    manager: depcache.CacheManager, invalidated_dep: str, dep_added: str, stored: bool
) -> None:
    calls = Calls()
    computing, invalidated = threading.Event(), threading.Event()

    @cache_with_deps(cache_manager=manager)
    def f() -> int:
        calls()
        if dep_added == "before":
            add_dependency("row")
        if calls.count == 1:
            computing.set()
            assert invalidated.wait(5)
        if dep_added == "after":
            add_dependency("row")
        return calls.count

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(f)
        assert computing.wait(5)
        assert manager.invalidate_dependency(invalidated_dep) == 0
        invalidated.set()
        assert future.result(5) == 1

    expected_next = 1 if stored else 2
    assert f() == expected_next
    assert f() == expected_next
    assert calls.count == expected_next
