"""The in-process (L1) cache: served locally, kept coherent across real processes by pub/sub."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import pytest
import redis

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps
from depcache.call._entry import Entry
from depcache.l1._local import LocalCache
from depcache.testing import reset_managers

pytestmark = pytest.mark.redis


def _l1_manager(url: str, prefix: str, **extra: Any) -> depcache.CacheManager:
    config = RedisConfig(url=url, prefix=prefix, l1_size=1000, l1_max_age=30, **extra)
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    assert manager._listener is not None
    assert manager._listener.subscribed.wait(5)
    return manager


def _wait(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_l1_hit_does_not_touch_redis(redis_url: str, prefix: str) -> None:
    manager = _l1_manager(redis_url, prefix)
    calls: list[int] = []

    @cache_with_deps(cache_manager=manager)
    def f(x: int) -> tuple[int, int]:
        calls.append(x)
        add_dependency(f"x:{x}")
        return (x, x)

    assert f(1) == (1, 1)
    lookups: list[str] = []
    original = manager.backend.lookup
    manager.backend.lookup = lambda key: lookups.append(key) or original(key)  # type: ignore[method-assign]
    assert f(1) == (1, 1)
    assert f(1) == (1, 1)
    assert lookups == []
    assert calls == [1]
    manager.invalidate_dependency("x:1")  # local invalidation drops it at once
    assert f(1) == (1, 1)
    assert calls == [1, 1]
    manager.close()


def _reader(url: str, prefix: str, ready: Any, go: Any, out: Any) -> None:  # child process
    reset_managers()
    manager = _l1_manager(url, prefix)
    source = redis.Redis.from_url(url)

    @cache_with_deps(cache_manager=manager)
    def profile() -> str:
        add_dependency("user:1")
        return source.get(f"{prefix}:truth").decode()

    out.put(("first", profile()))
    ready.set()
    go.wait(10)
    out.put(("cached", profile()))  # from L1: Redis's entry was deleted, L1 does not know yet
    start = time.monotonic()
    while profile() == "v1" and time.monotonic() - start < 5:
        time.sleep(0.001)
    out.put(("after", profile(), time.monotonic() - start))
    manager.close()


def test_invalidation_in_one_process_reaches_another_process_l1(
    redis_url: str, prefix: str
) -> None:
    source = redis.Redis.from_url(redis_url)
    source.set(f"{prefix}:truth", "v1")
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Event(), ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_reader, args=(redis_url, prefix, ready, go, out))
    child.start()
    try:
        assert ready.wait(30)
        assert out.get(timeout=10) == ("first", "v1")
        writer = depcache.get_or_create_cache_manager(
            prefix, config=RedisConfig(url=redis_url, prefix=prefix)
        )
        source.set(f"{prefix}:truth", "v2")
        # the reader's L1 still holds v1 until the announcement arrives
        go.set()
        assert out.get(timeout=10) == ("cached", "v1")
        assert writer.invalidate_dependency("user:1") == 1
        label, value, elapsed = out.get(timeout=10)
        assert (label, value) == ("after", "v2")
        assert elapsed < 5
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()


def test_a_load_overtaken_by_an_invalidation_is_not_kept() -> None:
    l1 = LocalCache(10, 30)
    l1.flush(active=True)
    entry = Entry("old", None, {"m": ["user:1"]})
    token = l1.token()  # a load begins
    l1.invalidate(["user:1"])  # the announcement arrives before the load finishes
    assert not l1.put("k", entry, ["user:1"], token)
    assert l1.get("k") is None
    fresh = l1.token()
    assert l1.put("k", entry, ["user:1"], fresh)
    assert l1.get("k") is entry
    token = l1.token()
    l1.invalidate(["other"])  # unrelated invalidations do not refuse a load
    assert l1.put("k2", entry, ["user:1"], token)


def test_lost_subscription_flushes_and_disables_l1_until_resubscribed(
    redis_url: str, prefix: str
) -> None:
    manager = _l1_manager(redis_url, prefix)
    assert manager.l1 is not None
    calls: list[int] = []

    @cache_with_deps(cache_manager=manager)
    def f() -> int:
        calls.append(1)
        add_dependency("d")
        return 7

    f()
    assert len(manager.l1) == 1
    admin = redis.Redis.from_url(redis_url)
    admin.client_kill_filter(_type="pubsub")  # drop every subscriber connection
    assert _wait(lambda: len(manager.l1) == 0)  # type: ignore[arg-type]
    assert _wait(lambda: manager.l1.active)  # type: ignore[union-attr]  # resubscribed
    assert f() == 7  # from Redis, back into L1
    assert len(manager.l1) == 1
    assert calls == [1]
    manager.close()


def test_max_age_bounds_staleness(prefix: str) -> None:
    config = depcache.ConfigBase(prefix=prefix, backend="memory", l1_size=10, l1_max_age=0.2)
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    assert manager.l1 is not None

    @cache_with_deps(cache_manager=manager)
    def f() -> int:
        return 1

    f()
    assert len(manager.l1) == 1
    time.sleep(0.3)
    assert manager.l1.get(next(iter(manager.l1._entries))) is None


def test_l1_is_bounded(prefix: str) -> None:
    config = depcache.ConfigBase(prefix=prefix, backend="memory", l1_size=5)
    manager = depcache.get_or_create_cache_manager(prefix, config=config)

    @cache_with_deps(cache_manager=manager)
    def f(i: int) -> int:
        add_dependency("all")
        return i

    for i in range(20):
        f(i)
    assert manager.l1 is not None
    assert len(manager.l1) == 5
    manager.invalidate_dependency("all")
    assert len(manager.l1) == 0


def test_l1_on_a_cluster_follows_invalidations_made_elsewhere(
    cluster_url: str, prefix: str
) -> None:
    reader = _l1_manager(cluster_url, prefix, cluster=True)
    writer = depcache.CacheManager(
        RedisConfig(url=cluster_url, prefix=prefix, cluster=True), name=f"{prefix}-writer"
    )
    calls: list[int] = []

    @cache_with_deps(cache_manager=reader)
    def f() -> int:
        calls.append(1)
        add_dependency("row")
        return len(calls)

    assert f() == 1
    assert f() == 1
    assert reader.l1 is not None
    assert len(reader.l1) == 1
    assert writer.invalidate_dependency("row") == 1  # another manager: only pub/sub tells
    assert _wait(lambda: len(reader.l1) == 0)  # type: ignore[arg-type]
    assert f() == 2
    writer.close()
    reader.close()


def _forked_reader(url: str, prefix: str, ready: Any, go: Any, result: Any) -> None:
    """In a forked child: the L1 inherited from the parent must follow invalidations again."""
    manager = depcache.registered_managers()[prefix]
    calls = manager._test_calls  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while manager.l1 is None or not manager.l1.active:  # flushed at the fork, then listening
        if time.monotonic() > deadline:
            result.put("the child's L1 never listened again")
            return
        time.sleep(0.01)
    first = calls["f"](1)
    ready.set()
    go.wait(10)
    deadline = time.monotonic() + 5
    while calls["f"](1) == first:
        if time.monotonic() > deadline:
            result.put(f"stale after the invalidation: {first}")
            return
        time.sleep(0.01)
    result.put("ok")


@pytest.mark.redis
def test_a_forked_child_keeps_its_inherited_l1_coherent(redis_url: str, prefix: str) -> None:
    manager = depcache.get_or_create_cache_manager(
        prefix, config=RedisConfig(url=redis_url, prefix=prefix, l1_size=100, l1_max_age=600)
    )
    assert manager._listener is not None
    assert manager._listener.subscribed.wait(10)
    version = mp.get_context("fork").Value("i", 0)

    @cache_with_deps(cache_manager=manager, ttl=600)
    def f(x: int) -> int:
        add_dependency(f"row:{x}")
        return int(version.value)

    manager._test_calls = {"f": f}  # type: ignore[attr-defined]
    assert f(1) == 0  # in the parent's L1 before the fork
    context = mp.get_context("fork")
    ready, go, result = context.Event(), context.Event(), context.Queue()
    child = context.Process(target=_forked_reader, args=(redis_url, prefix, ready, go, result))
    child.start()
    try:
        assert ready.wait(15)
        version.value = 1
        manager.invalidate_dependency("row:1")
        go.set()
        assert result.get(timeout=20) == "ok"
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()


@pytest.mark.parametrize("validate", [True, False], ids=["l1_validate", "announcement only"])
@pytest.mark.parametrize("topology", ["redis", "cluster"])
def test_l1_validate_reads_another_process_write_before_its_announcement(
    request: pytest.FixtureRequest, prefix: str, validate: bool, topology: str
) -> None:
    if topology == "cluster":
        url, cluster = request.getfixturevalue("cluster_url"), True
    else:
        url, cluster = request.getfixturevalue("redis_url"), False
    reader = depcache.get_or_create_cache_manager(
        f"{prefix}-reader",
        config=RedisConfig(
            url=url,
            prefix=prefix,
            cluster=cluster,
            l1_size=100,
            l1_max_age=600,
            l1_validate=validate,
        ),
    )
    writer = depcache.get_or_create_cache_manager(  # another process, in effect: no shared L1
        f"{prefix}-writer", config=RedisConfig(url=url, prefix=prefix, cluster=cluster)
    )
    assert reader._listener is not None
    assert reader._listener.subscribed.wait(10)
    l1 = reader.l1
    assert l1 is not None
    truth = {"row": 1}

    @cache_with_deps(cache_manager=reader, ttl=600)
    def row() -> int:
        add_dependency("row")
        return truth["row"]

    assert row() == 1
    assert row() == 1  # an L1 hit
    l1.invalidate = lambda deps: 0  # type: ignore[method-assign]  # the announcement is late
    truth["row"] = 2
    writer.invalidate_dependency("row")  # returned: another process's write is done
    # validated, the L1 entry is found void and dropped; otherwise it is served until the
    # announcement arrives (the documented window)
    assert row() == (2 if validate else 1)


# --- backend.subscribe(): what the L1 listens through ---------------------------------------------


def test_memory_backend_announces_in_process_to_another_managers_l1(prefix: str) -> None:
    """Two managers on one in-memory store: one's invalidation reaches the other's L1 through
    the store's subscription, at once; stopping the subscription switches that L1 off."""
    reader = depcache.CacheManager(
        depcache.ConfigBase(prefix=prefix, backend="memory", l1_size=10), name="reader"
    )
    writer = depcache.CacheManager(depcache.ConfigBase(prefix=prefix, backend="memory"))
    assert reader.l1 is not None
    assert reader.l1.active
    calls: list[int] = []

    @cache_with_deps(cache_manager=reader)
    def f() -> int:
        calls.append(1)
        add_dependency("d")
        return len(calls)

    assert f() == f() == 1
    assert len(reader.l1) == 1
    writer.invalidate_dependency("d")
    assert len(reader.l1) == 0
    assert f() == 2
    reader.close()
    assert not reader.l1.active  # no longer hears invalidations: serves nothing
    writer.invalidate_dependency("d")
    assert f() == 3


def test_a_backend_that_cannot_subscribe_leaves_the_l1_off(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Silent(depcache.FakeCacheBackend):
        def subscribe(self, channel: str, subscriber: Any) -> None:
            return super(depcache.FakeCacheBackend, self).subscribe(channel, subscriber)

    config = depcache.ConfigBase(prefix=prefix, backend="memory", l1_size=10)
    manager = depcache.CacheManager(config, backend=Silent(config))
    assert "L1 needs a Redis or memory backend" in caplog.text
    assert manager._listener is None
    assert manager.l1 is not None
    assert not manager.l1.active

    @cache_with_deps(cache_manager=manager)
    def f() -> int:
        return 1

    assert f() == f() == 1
    assert len(manager.l1) == 0  # never filled while it is off
