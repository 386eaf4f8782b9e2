"""The standalone runner's quick checkout (``backends/redis_client.py``: ``QuickCheckout``).

A connection whose last user was the runner (which reads every reply) is taken and returned
without redis-py's ``get_connection``/``release``; any other goes through them, so that their
check for unread data still protects every reply. Each test runs real commands on the test
Redis and checks the replies, not only which path was taken.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.cache import CacheConfig
from redis.maint_notifications import MaintNotificationsConfig

import depcache
from depcache import RedisConfig
from depcache.backends.redis_client import QuickCheckout, create_sync_client
from depcache.backends.runners import standalone_runner

pytestmark = pytest.mark.redis


class _Counting:
    """Counts the pool's own checkouts (of a pool, or of a client's pool)."""

    def __init__(self, pool: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        pool = getattr(pool, "connection_pool", pool)
        self.count = 0
        original = pool.get_connection

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(pool, "get_connection", counted)


def _interrupt_first_read(connection: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection's next reply is never read: the read raises KeyboardInterrupt (after the
    command was sent), as an interrupt in the middle of an exchange does."""
    read = connection.read_response
    calls = 0

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyboardInterrupt
        return read(*args, **kwargs)

    monkeypatch.setattr(connection, "read_response", interrupted)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = create_sync_client(RedisConfig(url=redis_url, max_connections=4))
    yield c
    c.close()


@pytest.fixture
def key(redis_url: str) -> Iterator[str]:
    name = f"quick-{uuid.uuid4().hex}"
    yield name
    with redis.Redis.from_url(redis_url) as admin:
        admin.delete(name, f"{name}:other")


def test_only_depcache_pools_take_the_quick_path(client: redis.Redis, redis_url: str) -> None:
    assert QuickCheckout.supports(client.connection_pool)
    with redis.Redis.from_url(redis_url) as plain:  # redis-py's own pool: redis-py decides
        assert not QuickCheckout.supports(plain.connection_pool)
        checkout = QuickCheckout(plain.connection_pool)
        connection, quick = checkout.acquire()  # through get_connection, checks and all
        assert not quick
        checkout.finish(connection, quick=quick, clean=True)
    # a pool whose idle connections may hold what the quick path does not read first: redis-py
    stack = type(client.connection_pool.pool)
    explicit = redis.BlockingConnectionPool(
        queue_class=stack,
        protocol=3,
        maint_notifications_config=MaintNotificationsConfig(enabled=True),
    )
    cached = redis.BlockingConnectionPool(queue_class=stack, protocol=3, cache_config=CacheConfig())
    assert not QuickCheckout.supports(explicit)
    assert not QuickCheckout.supports(cached)
    assert QuickCheckout.supports(redis.BlockingConnectionPool(queue_class=stack))  # "auto"


def test_the_runner_reuses_its_connection_without_the_pool(
    client: redis.Redis, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = standalone_runner(client)
    counting = _Counting(client.connection_pool, monkeypatch)
    assert run([("SET", key, "1")]) == [b"OK"]
    assert counting.count == 1  # the first time: no connection of ours yet
    for i in range(20):
        assert run([("INCR", key), ("GET", key)]) == [i + 2, str(i + 2).encode()]
    assert counting.count == 1  # every later batch took the quick path


def test_a_connection_redis_py_used_is_checked_again(
    client: redis.Redis, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command of redis-py's own left a reply unread (what an interrupt in the middle of it
    does): the runner must not take that connection quick, and must read its own replies."""
    run = standalone_runner(client)
    assert run([("SET", key, "mine")]) == [b"OK"]
    pool = client.connection_pool
    connection = pool.get_connection()  # the runner's connection, now in redis-py's hands
    connection.send_command("SET", f"{key}:other", "stray")  # its reply never read
    assert connection.can_read(timeout=5)  # arrived (redis-py's check sees only what has)
    pool.release(connection)
    counting = _Counting(pool, monkeypatch)
    assert run([("GET", key)]) == [b"mine"]  # not b"OK", the stray reply
    assert counting.count == 1  # through get_connection, which found the data and reconnected
    assert run([("GET", key)]) == [b"mine"]
    assert counting.count == 1  # quick again: the runner read everything


def test_an_exchange_cut_short_drops_its_connection(
    client: redis.Redis, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = standalone_runner(client)
    assert run([("SET", key, "v")]) == [b"OK"]
    connection = client.connection_pool.pool.queue[-1]
    _interrupt_first_read(connection, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run([("SET", key, "w"), ("GET", key)])
    assert connection._sock is None  # disconnected: its replies are lost with it
    assert not connection.depcache_quick
    monkeypatch.undo()
    assert run([("GET", key), ("ECHO", "next")]) == [b"w", b"next"]


def test_a_connection_the_server_closed_while_idle_is_replaced(
    client: redis.Redis, key: str, redis_url: str
) -> None:
    """What a restarted or timed-out server leaves: the runner's idle connection is closed by
    the server; the next batch fails on it before running, and goes again through redis-py."""
    run = standalone_runner(client)
    assert run([("SET", key, "0")]) == [b"OK"]
    connection = client.connection_pool.pool.queue[-1]
    assert connection.depcache_quick
    with redis.Redis.from_url(redis_url) as admin:
        (client_id,) = run([("CLIENT", "ID")])
        assert admin.client_kill_filter(_id=client_id) == 1
    assert run([("INCR", key), ("GET", key)]) == [1, b"1"]  # ran once: not sent twice
    assert run([("GET", key)]) == [b"1"]


def _child_inherited(run: Any, client: redis.Redis, key: str, out: Any) -> None:
    parent_connections = list(client.connection_pool.pool.queue)
    replies = run([("GET", key), ("ECHO", "child")])
    mine = client.connection_pool.pool.queue[-1]
    out.put((replies, any(mine is c for c in parent_connections)))


def test_a_forked_child_does_not_take_its_parents_connections(
    client: redis.Redis, key: str
) -> None:
    run = standalone_runner(client)
    assert run([("SET", key, "parent")]) == [b"OK"]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_inherited, args=(run, client, key, out))
    child.start()
    replies, shared = out.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    assert replies == [b"parent", b"child"]
    assert not shared  # the child made its own connection
    assert run([("GET", key)]) == [b"parent"]  # and the parent's still works


def test_a_managers_lookups_and_stores_take_the_quick_path(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hit path (its own pre-packed lookup) and the runner share the quick path: after the
    first checkout, misses and hits do not go through the pool."""
    manager = depcache.get_or_create_cache_manager(
        prefix, config=RedisConfig(url=redis_url, prefix=prefix)
    )

    @depcache.cache_with_deps(cache_manager=manager, ttl=60)
    def f(i: int) -> int:
        depcache.add_dependency(f"row:{i}")
        return i * 2

    counting = _Counting(manager.backend.redis, monkeypatch)  # type: ignore[attr-defined]
    assert [f(i) for i in range(20)] == [i * 2 for i in range(20)]  # misses: lookup + store
    assert [f(i) for i in range(20)] == [i * 2 for i in range(20)]  # hits
    assert counting.count <= 1


def test_an_interrupted_lookup_drops_its_connection(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = depcache.get_or_create_cache_manager(
        prefix, config=RedisConfig(url=redis_url, prefix=prefix)
    )
    manager.set("k", "v", dependencies=["d"])
    assert manager.get("k") == "v"
    pool = manager.backend.redis.connection_pool  # type: ignore[attr-defined]
    connection = pool.pool.queue[-1]
    assert connection.depcache_quick
    _interrupt_first_read(connection, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        manager.get("k")
    assert connection._sock is None
    monkeypatch.undo()
    manager.set("k2", "w", dependencies=["d"])
    assert manager.get("k") == "v"
    assert manager.get("k2") == "w"
