"""A cache target that hangs (a Redis server SIGSTOPped: it accepts connections but never answers)
holds up neither the bus consumer nor the other targets: the fan-out runs off the consumer thread,
one lane per manager. Once the server answers again, everything is applied; when its client timed
out meanwhile, through the retry path. Acknowledgements wait for every target (at least once)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Queue

import depcache
import depcache_celery
from depcache_celery import Router, install
from tests.support.celery_fixtures import (
    Names,
    embedded_worker,
    fill,
    make_app,
    publish_event,
    wait_for,
)
from tests.support.servers import RedisServer, redis_server

pytestmark = pytest.mark.redis

ENTRIES = {"u1": {"user:1"}, "u2": {"user:2"}, "u3": {"user:3"}, "t9": {"task:9"}, "keep": {"x"}}


def _router() -> Router:
    router = Router()
    router.on_event("user.updated", deps=["user:{id}"])
    return router


def _user_event(user_id: int) -> dict[str, object]:
    return {"event": "user.updated", "data": {"id": user_id}}


def _manager(name: str, url: str, **options: object) -> depcache.CacheManager:
    config = depcache.RedisConfig(url=url, prefix=name, **options)  # type: ignore[arg-type]
    return depcache.get_or_create_cache_manager(name=name, config=config)


def _gone(managers: list[depcache.CacheManager], *keys: str) -> bool:
    return not any(m.exists(k) for m in managers for k in keys)


def _count(name: str) -> int:
    value = depcache_celery.stats.snapshot().get(name, 0)
    assert isinstance(value, int)
    return value


def _messages_left(broker_url: str, queue: str) -> int:
    """Messages ready in the worker's queue: once the worker stopped, those it did not
    acknowledge are back there (RabbitMQ requeues them, kombu's Redis transport restores them)."""
    with Connection(broker_url) as conn:
        bound = Queue(queue, durable=True, auto_delete=False)(conn.default_channel)
        declared: Any = bound.queue_declare()
        return int(declared.message_count)


class Freezer:
    """SIGSTOP / SIGCONT a redis-server: while stopped, the kernel still accepts connections and
    buffers commands, but nothing answers."""

    def __init__(self, server: RedisServer) -> None:
        process = server.executor.process
        assert process is not None
        self.pid = process.pid

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


@pytest.fixture
def hung_server(standalone_servers: list[RedisServer], prefix: str) -> Iterator[RedisServer]:
    """A fresh server to freeze (thawed again before it is stopped)."""
    with redis_server() as server:
        try:
            yield server
        finally:
            Freezer(server).thaw()
            client = redis.Redis.from_url(standalone_servers[0].url)
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()


def test_a_hung_target_holds_up_neither_the_consumer_nor_the_other_targets(
    broker_url: str,
    names: Names,
    standalone_servers: list[RedisServer],
    redis_url: str,
    prefix: str,
    hung_server: RedisServer,
) -> None:
    healthy = [
        _manager(f"{prefix}main", redis_url),
        _manager(f"{prefix}s0", standalone_servers[0].url),
    ]
    # its client waits far longer than this test for an answer: it never times out here
    hung = _manager(f"{prefix}hung", hung_server.url, socket_timeout=300)
    for manager in [*healthy, hung]:
        fill(manager, ENTRIES)
    app = make_app(broker_url, names)
    install(app, router=_router())
    freezer = Freezer(hung_server)
    with embedded_worker(app):
        freezer.freeze()
        try:
            # each event is applied to the healthy targets while the hung one still has the
            # first: a consumer stuck in the first batch would never take the second
            for n in (1, 2, 3):
                publish_event(broker_url, names.exchange, "user.updated", _user_event(n))
                key = f"u{n}"
                wait_for(lambda: _gone(healthy, key), timeout=20, what=f"event {n}")  # noqa: B023
            # the consumer thread is free: the solo pool runs a task in it, for the healthy
            # managers only
            app.send_task("depcache.invalidate", args=[["task:9"], [m.name for m in healthy]])
            wait_for(lambda: _gone(healthy, "t9"), timeout=20, what="a task meanwhile")
            # nothing failed or was handed off: the hung target's invalidation is still waiting
            counts = depcache_celery.stats.snapshot()
            assert counts["target_failures"] == {}
            assert counts["retries"] == 0
            assert counts["events"] == 3
        finally:
            freezer.thaw()
        # the hung target now applies the first event, then the two that waited for it at once
        wait_for(lambda: _gone([hung], "u1", "u2", "u3"), timeout=30, what="the hung target")
    for manager in [*healthy, hung]:
        assert manager.exists("keep"), manager.name
    assert hung.exists("t9")  # the task was for the healthy managers only
    counts = depcache_celery.stats.snapshot()
    assert counts["target_failures"] == {}
    assert counts["retries"] == 0
    assert counts["dead_letters"] == {}
    # every event was acknowledged: none came back to the queue when the worker stopped
    assert _messages_left(broker_url, names.queue) == 0


def test_a_hung_target_that_times_out_gets_its_share_through_the_retry_path(
    broker_url: str,
    names: Names,
    redis_url: str,
    prefix: str,
    hung_server: RedisServer,
) -> None:
    healthy = [_manager(f"{prefix}main", redis_url)]
    hung = _manager(f"{prefix}hung", hung_server.url, socket_timeout=2)
    for manager in [*healthy, hung]:
        fill(manager, ENTRIES)
    # the hand-off's task runs 1 s later, fails after the 2 s timeout, and retries 2 s later
    app = make_app(broker_url, names, depcache_retry_backoff_max=3)
    install(app, router=_router())
    freezer = Freezer(hung_server)
    with embedded_worker(app):
        freezer.freeze()
        try:
            publish_event(broker_url, names.exchange, "user.updated", _user_event(1))
            wait_for(lambda: _gone(healthy, "u1"), timeout=20, what="the healthy target")
            # one retry counted for the consumer's hand-off, one for the first retry failing
            wait_for(lambda: _count("retries") >= 2, timeout=30, what="a failed retry")
            failures = depcache_celery.stats.snapshot()["target_failures"]
            assert isinstance(failures, dict)
            assert set(failures) == {hung.name}
        finally:
            freezer.thaw()
        # the server executes what was buffered while it was stopped: cache the entry there
        # again, so that only the next retry (2 s away) can remove it
        fill(hung, {"u1": {"user:1"}})
        wait_for(lambda: not hung.exists("u1"), timeout=20, what="the retried share")
    assert hung.exists("u2")
    assert all(m.exists("u2") for m in healthy)
    counts = depcache_celery.stats.snapshot()
    assert counts["dead_letters"] == {}
    assert counts["events"] == 1
    assert _messages_left(broker_url, names.queue) == 0
