"""The seed README's promises on invalidation across managers
(over memory and Redis, sync and async)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
import redis.asyncio

import depcache
from depcache import add_dependency, cache_with_deps, current_cache_key
from tests.conftest import MakeManager
from tests.support.helpers import Calls, cached, call, entry_keys, op


async def _invalidate_everywhere(mode: str, *deps: str, **kwargs: Any) -> Any:
    if mode == "sync":
        return depcache.invalidate(*deps, **kwargs)
    return await depcache.ainvalidate(*deps, **kwargs)


async def test_invalidate_across_managers(make_manager: MakeManager, mode: str) -> None:
    m1, m2, m3 = make_manager("one"), make_manager("two"), make_manager("three")
    calls = Calls()

    def body(x: int) -> int:
        calls(x)
        add_dependency("shared")
        return x

    f1 = cached(mode, cache_manager=m1)(body)
    f2 = cached(mode, cache_manager=m2)(body)
    for fn, x in ((f1, 1), (f1, 2), (f2, 1)):
        await call(fn, x)
    assert calls.count == 3

    report = await _invalidate_everywhere(mode, "shared", "other")
    assert report.ok
    assert report.errors == {}
    assert report.removed == {m1.name: 2, m2.name: 1, m3.name: 0}
    assert report.total == 3

    for fn, x in ((f1, 1), (f1, 2), (f2, 1)):
        await call(fn, x)
    assert calls.count == 6


async def test_invalidate_named_managers_only(make_manager: MakeManager, mode: str) -> None:
    m1, m2 = make_manager("one"), make_manager("two")
    calls = Calls()

    def body() -> int:
        calls()
        add_dependency("shared")
        return 1

    f1 = cached(mode, cache_manager=m1)(body)
    f2 = cached(mode, cache_manager=m2)(body)
    await call(f1)
    await call(f2)
    report = await _invalidate_everywhere(mode, "shared", managers=[m2.name])
    assert report.removed == {m2.name: 1}
    await call(f1)
    await call(f2)
    assert calls.count == 3


@pytest.mark.redis
async def test_invalidate_reports_failures_after_trying_all(
    redis_manager: depcache.CacheManager, prefix: str, mode: str
) -> None:
    bad_name = f"{prefix}bad"
    depcache.get_or_create_cache_manager(
        name=bad_name,
        config=depcache.RedisConfig(url="redis://127.0.0.1:1/0", prefix=bad_name),
    )
    calls = Calls()

    @cached(mode, cache_manager=redis_manager, dependencies=["shared"])
    def f() -> int:
        calls()
        return 1

    await call(f)
    with pytest.raises(depcache.InvalidationError) as excinfo:
        await _invalidate_everywhere(mode, "shared")
    report = excinfo.value.report
    assert not report.ok
    assert report.removed.get(redis_manager.name) == 1
    assert set(report.errors) == {bad_name}
    assert isinstance(report.errors[bad_name], depcache.BackendError)
    await call(f)
    assert calls.count == 2


@pytest.mark.redis
def test_redis_entry_layout(
    redis_manager: depcache.CacheManager, redis_client: redis.Redis, prefix: str
) -> None:
    keys: list[str | None] = []

    @cache_with_deps(cache_manager=redis_manager, ttl=100)
    def f() -> int:
        keys.append(current_cache_key())
        add_dependency("layout")
        return 1

    f()
    assert entry_keys(redis_client, prefix) == [f"{prefix}:k:{keys[0]}".encode()]
    index = f"{prefix}:d:{{layout}}:i"
    assert redis_client.type(index) == b"zset"
    # the entry, and the dependency's marker: member '' scored minus the epoch it was last
    # invalidated at (or first used)
    assert redis_client.zrange(index, 0, -1) == [b"", keys[0].encode()]  # named without prefix
    assert redis_client.zscore(index, "") < 0
    assert redis_client.ttl(index) > 0  # the index lives as long as its longest entry
    assert redis_manager.invalidate_dependency("layout") == 1
    assert entry_keys(redis_client, prefix) == []
    assert redis_client.zrange(index, 0, -1) == [b""]  # only the marker is left
    assert -redis_client.zscore(index, "") == int(redis_client.get(f"{prefix}:epoch"))


@pytest.mark.redis
def test_dependency_index_lives_as_long_as_its_entries(
    redis_manager: depcache.CacheManager, redis_client: redis.Redis, prefix: str
) -> None:
    index = f"{prefix}:d:{{d}}:i"
    redis_manager.set("short", 1, ttl=100, dependencies={"d"})
    assert 95 <= redis_client.ttl(index) <= 100
    redis_manager.set("long", 1, ttl=300, dependencies={"d"})
    assert 295 <= redis_client.ttl(index) <= 300
    redis_manager.set("shorter", 1, ttl=50, dependencies={"d"})
    assert 295 <= redis_client.ttl(index) <= 300  # never dies before its longest-lived entry
    redis_manager.set("forever", 1, dependencies={"d"})
    assert redis_client.ttl(index) == -1
    assert redis_client.zcard(index) == 5  # four entries and the marker

    pruned = f"{prefix}:d:{{e}}:i"
    redis_manager.set("blink", 1, ttl=0.2, dependencies={"e"})
    time.sleep(0.3)
    swept = [b"", b"next"]  # an index names entries without the prefix
    for _ in range(100):  # about one store in four sweeps an index
        redis_manager.set("next", 1, ttl=100, dependencies={"e"})
        if redis_client.zrange(pruned, 0, -1) == swept:
            break
    assert redis_client.zrange(pruned, 0, -1) == swept  # the expired member was dropped

    assert redis_manager.invalidate_dependency("d") == 4
    # the marker outlives the entries by the guard window
    assert redis_client.zrange(index, 0, -1) == [b""]
    assert 0 < redis_client.pttl(index) <= 600_000
    assert redis_client.exists(f"{prefix}:epoch") == 1


@pytest.mark.redis
async def test_redis_round_trips(
    redis_manager: depcache.CacheManager, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a round trip is one write of commands to a connection (the hit path writes its one
    # command to a pooled connection itself, past execute_command)
    connection_class: Any = (
        redis.connection.Connection if mode == "sync" else redis.asyncio.connection.Connection
    )
    original = connection_class.send_packed_command
    commands: list[str] = []

    def counting(self: Any, command: Any, *args: Any, **options: Any) -> Any:
        commands.append(repr(command)[:60])
        return original(self, command, *args, **options)

    async def acounting(self: Any, command: Any, *args: Any, **options: Any) -> Any:
        commands.append(repr(command)[:60])
        return await original(self, command, *args, **options)

    @cached(mode, cache_manager=redis_manager)
    def f(x: int) -> int:
        for i in range(5):
            add_dependency(f"dep{i}")
        add_dependency("all")
        return x

    await call(f, 0)  # loads the store script
    await op(redis_manager, mode, "invalidate_dependency", "warm-up")  # and the invalidate one
    for x in range(1, 100):
        await call(f, x)
    monkeypatch.setattr(
        connection_class, "send_packed_command", counting if mode == "sync" else acounting
    )

    commands.clear()
    await call(f, 1000)
    assert len(commands) == 2, commands  # miss + store, whatever the number of dependencies
    commands.clear()
    await call(f, 1000)
    assert len(commands) == 1, commands  # hit
    commands.clear()
    assert await op(redis_manager, mode, "invalidate_dependency", "all") == 101
    assert len(commands) == 1, commands  # invalidation, whatever the number of entries
