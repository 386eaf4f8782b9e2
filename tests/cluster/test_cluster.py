"""Redis Cluster specifics and several deployments in one process.

The behavioural suite (test_behaviour.py and friends) also runs on the cluster through the
``backend_kind`` fixture; this file covers what only a cluster or several deployments show.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import redis

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis


def _cluster_manager(url: str, name: str) -> depcache.CacheManager:
    return depcache.get_or_create_cache_manager(
        name, config=RedisConfig(url=url, prefix=name, cluster=True)
    )


def test_entries_spread_over_every_master_and_one_dependency_reaches_all(
    cluster_url: str, cluster_nodes: list[RedisServer], prefix: str
) -> None:
    manager = _cluster_manager(cluster_url, prefix)
    calls = []

    @cache_with_deps(cache_manager=manager, ttl=60)
    def item(i: int) -> int:
        calls.append(i)
        add_dependency("catalogue")  # one dependency shared by entries on every shard
        add_dependency(f"item:{i}")
        return i * 2

    assert [item(i) for i in range(300)] == [i * 2 for i in range(300)]
    assert [item(i) for i in range(300)] == [i * 2 for i in range(300)]
    assert len(calls) == 300

    per_master = {
        node.port: len(list(redis.Redis(port=node.port).scan_iter(match=f"{prefix}:k:*")))
        for node in cluster_nodes
    }
    assert sum(per_master.values()) == 300
    assert all(count > 0 for count in per_master.values()), per_master

    assert manager.invalidate_dependency("catalogue") == 300
    for node in cluster_nodes:
        assert list(redis.Redis(port=node.port).scan_iter(match=f"{prefix}:k:*")) == []
    assert item(7) == 14
    assert len(calls) == 301


async def test_async_on_cluster_many_concurrent_calls(cluster_url: str, prefix: str) -> None:
    manager = _cluster_manager(cluster_url, prefix)

    @cache_with_deps(cache_manager=manager)
    async def double(i: int) -> int:
        add_dependency("all")
        await asyncio.sleep(0)
        return i * 2

    results = await asyncio.gather(*(double(i) for i in range(400)))
    assert results == [i * 2 for i in range(400)]
    assert await manager.ainvalidate_dependency("all") == 400


def test_stale_set_refused_on_cluster(cluster_url: str, prefix: str) -> None:
    manager = _cluster_manager(cluster_url, prefix)
    db = {"user": "old"}
    read_done, go_on = threading.Event(), threading.Event()
    results: list[str] = []

    @cache_with_deps(cache_manager=manager)
    def profile() -> str:
        value = db["user"]
        if not go_on.is_set():
            read_done.set()
            assert go_on.wait(10)
        add_dependency("user")
        add_dependency("other")  # a second dependency, most likely on another shard
        return value

    slow = threading.Thread(target=lambda: results.append(profile()))
    slow.start()
    assert read_done.wait(10)
    db["user"] = "new"
    manager.invalidate_dependency("user")
    go_on.set()
    slow.join(10)
    assert results == ["old"]
    assert profile() == "new"


def _standalone_manager(server: RedisServer, name: str) -> depcache.CacheManager:
    return depcache.get_or_create_cache_manager(
        name, config=RedisConfig(url=server.url, prefix=name)
    )


def _cached_on(manager: depcache.CacheManager) -> object:
    @cache_with_deps(cache_manager=manager)
    def profile(user_id: int) -> dict[str, int]:
        add_dependency(f"user:{user_id}")
        return {"id": user_id}

    return profile


def test_invalidate_reaches_every_deployment(
    standalone_servers: list[RedisServer], cluster_url: str, prefix: str
) -> None:
    managers = [
        _standalone_manager(standalone_servers[0], f"{prefix}a"),
        _standalone_manager(standalone_servers[1], f"{prefix}b"),
        _cluster_manager(cluster_url, f"{prefix}c"),
    ]
    for manager in managers:
        profile = _cached_on(manager)
        profile(1)  # type: ignore[operator]
        profile(2)  # type: ignore[operator]
    report = depcache.invalidate("user:1")
    assert report.ok
    assert report.removed == {f"{prefix}a": 1, f"{prefix}b": 1, f"{prefix}c": 1}
    for manager in managers:
        assert manager.invalidate_dependency("user:2") == 1


def test_one_deployment_down_does_not_stop_the_others(
    standalone_servers: list[RedisServer], cluster_url: str, prefix: str
) -> None:
    down = depcache.get_or_create_cache_manager(
        f"{prefix}down",
        config=RedisConfig(url="redis://127.0.0.1:1/0", prefix=f"{prefix}down", socket_timeout=1),
    )
    up = _standalone_manager(standalone_servers[0], f"{prefix}up")
    clustered = _cluster_manager(cluster_url, f"{prefix}cl")
    for manager in (up, clustered):
        _cached_on(manager)(5)  # type: ignore[operator]

    with pytest.raises(depcache.InvalidationError) as caught:
        depcache.invalidate("user:5")
    report = caught.value.report
    assert set(report.errors) == {down.name}
    assert isinstance(report.errors[down.name], depcache.BackendError)
    assert "127.0.0.1:1" in str(report.errors[down.name])
    assert report.removed == {up.name: 1, clustered.name: 1}


async def test_ainvalidate_runs_deployments_concurrently(
    standalone_servers: list[RedisServer], prefix: str
) -> None:
    """Each deployment's invalidation waits until all have started: only concurrency passes."""
    managers = [
        _standalone_manager(server, f"{prefix}{i}") for i, server in enumerate(standalone_servers)
    ]
    started: list[str] = []
    everyone_in = asyncio.Event()
    for manager in managers:
        original = manager.async_backend.invalidate_dependencies

        async def gated(deps: object, _original: object = original) -> int:
            started.append("x")
            if len(started) == len(managers):
                everyone_in.set()
            await asyncio.wait_for(everyone_in.wait(), 5)
            return await _original(deps)  # type: ignore[operator, no-any-return]

        manager.async_backend.invalidate_dependencies = gated  # type: ignore[method-assign]
    report = await depcache.ainvalidate("x")
    assert report.ok, report.errors
    assert len(started) == len(managers)


def test_invalidate_runs_deployments_concurrently(
    standalone_servers: list[RedisServer], prefix: str
) -> None:
    managers = [
        _standalone_manager(server, f"{prefix}{i}") for i, server in enumerate(standalone_servers)
    ]
    barrier = threading.Barrier(len(managers), timeout=5)
    for manager in managers:
        original = manager.backend.invalidate_dependencies

        def gated(deps: object, _original: object = original) -> int:
            barrier.wait()  # raises BrokenBarrierError if the others never start
            return _original(deps)  # type: ignore[operator, no-any-return]

        manager.backend.invalidate_dependencies = gated  # type: ignore[method-assign]
    report = depcache.invalidate("x")
    assert report.ok, report.errors
