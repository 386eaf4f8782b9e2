"""depcache_celery under faults, against real servers: three managers on three Redis deployments
(two standalone servers and a Cluster), a target that goes down and comes back, and a worker
SIGKILLed mid-stream on RabbitMQ."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import redis
from kombu import Connection, Exchange, Producer

import depcache
import depcache_celery
from depcache_celery import Router, Settings, event_queue, install
from tests.support.celery_fixtures import (
    Names,
    embedded_worker,
    fill,
    make_app,
    publish_event,
    start_worker_process,
    stop_process,
    wait_for,
)
from tests.support.servers import RedisServer, redis_server

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


def _router() -> Router:
    router = Router()
    router.on_event("user.updated", deps=["user:{id}", "posts:user:{id}"])
    return router


def _user_event(user_id: int) -> dict[str, object]:
    return {"event": "user.updated", "data": {"id": user_id}}


def _gone(managers: list[depcache.CacheManager], *keys: str) -> bool:
    return not any(m.exists(k) for m in managers for k in keys)


def _count(name: str) -> int:
    value = depcache_celery.stats.snapshot().get(name, 0)
    assert isinstance(value, int)
    return value


def _forget_keys(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass
    finally:
        client.close()


# --- 1. targets across deployments ---------------------------------------------------------------


def test_events_reach_managers_on_every_deployment(
    rabbitmq_broker: str,
    names: Names,
    standalone_servers: list[RedisServer],
    cluster_url: str,
    prefix: str,
) -> None:
    managers = [
        depcache.get_or_create_cache_manager(
            name=f"{prefix}s0",
            config=depcache.RedisConfig(url=standalone_servers[0].url, prefix=f"{prefix}s0"),
        ),
        depcache.get_or_create_cache_manager(
            name=f"{prefix}s1",
            config=depcache.RedisConfig(url=standalone_servers[1].url, prefix=f"{prefix}s1"),
        ),
        depcache.get_or_create_cache_manager(
            name=f"{prefix}c",
            config=depcache.RedisConfig(url=cluster_url, prefix=f"{prefix}c", cluster=True),
        ),
    ]
    entries = {
        "u1": {"user:1"},
        "p1": {"posts:user:1"},
        "u2": {"user:2"},
        "o9": {"order:9"},
        "keep": {"user:3"},
    }
    for manager in managers:
        fill(manager, entries)
    app = make_app(rabbitmq_broker, names)
    install(app, router=_router())
    try:
        with embedded_worker(app):
            publish_event(rabbitmq_broker, names.exchange, "user.updated", _user_event(1))
            wait_for(lambda: _gone(managers, "u1", "p1"), what="the event on every deployment")
            # an event without a handler, carrying its dependencies, and a template event at once
            publish_event(
                rabbitmq_broker,
                names.exchange,
                "order.paid",
                {"event": "order.paid", "data": {}, "dependencies": ["order:9"]},
            )
            publish_event(rabbitmq_broker, names.exchange, "user.updated", _user_event(2))
            wait_for(lambda: _gone(managers, "o9", "u2"), what="the second events everywhere")
        for manager in managers:
            assert manager.exists("keep"), manager.name
        counts = depcache_celery.stats.snapshot()
        assert counts["events"] == 3
        assert counts["target_failures"] == {}
        assert counts["dead_letters"] == {}
    finally:
        for manager in managers:
            manager.delete("keep")
        for server in standalone_servers:
            _forget_keys(server.url, prefix)


# --- 2. a target that is down ---------------------------------------------------------------------


def test_a_stopped_server_gets_its_share_once_it_is_back(
    rabbitmq_broker: str,
    names: Names,
    standalone_servers: list[RedisServer],
    redis_url: str,
    prefix: str,
) -> None:
    with redis_server() as server:
        healthy = [
            depcache.get_or_create_cache_manager(
                name=f"{prefix}main",
                config=depcache.RedisConfig(url=redis_url, prefix=f"{prefix}main"),
            ),
            depcache.get_or_create_cache_manager(
                name=f"{prefix}s0",
                config=depcache.RedisConfig(url=standalone_servers[0].url, prefix=f"{prefix}s0"),
            ),
        ]
        down = depcache.get_or_create_cache_manager(
            name=f"{prefix}down",
            config=depcache.RedisConfig(url=server.url, prefix=f"{prefix}down"),
        )
        entries = {"u1": {"user:1"}, "u2": {"user:2"}}
        for manager in [*healthy, down]:
            fill(manager, entries)
        # the first retry comes 1 s after the hand-off, the next 2 s after that, then every 3 s
        app = make_app(rabbitmq_broker, names, depcache_retry_backoff_max=3)
        install(app, router=_router())
        try:
            with embedded_worker(app):
                server.stop()
                published = time.monotonic()
                publish_event(rabbitmq_broker, names.exchange, "user.updated", _user_event(1))
                wait_for(lambda: _gone(healthy, "u1"), timeout=2, what="the healthy targets")
                assert time.monotonic() - published < 2.5

                # one retry counted for the hand-off, one for the first delayed task failing
                wait_for(lambda: _count("retries") >= 2, timeout=5, what="a failed retry")
                # the next retry is at least 2 s away: the server is back, and the entry cached
                # there again, well before it
                server.start()
                # the restart voids what was cached before it was noticed (a restarted server
                # may have lost invalidations): cache again once it has been
                watch = down.backend.watch
                assert watch is not None
                assert watch.wait_next_poll(5)
                fill(down, {"u1": {"user:1"}, "u2": {"user:2"}})
                wait_for(lambda: not down.exists("u1"), timeout=8, what="the retried share")
                assert down.exists("u2")
            for manager in healthy:
                assert manager.exists("u2"), manager.name
            counts = depcache_celery.stats.snapshot()
            failures = counts["target_failures"]
            assert isinstance(failures, dict)
            assert set(failures) == {down.name}
            assert failures[down.name] >= 2
            assert counts["dead_letters"] == {}
        finally:
            _forget_keys(standalone_servers[0].url, prefix)


# --- 3. SIGKILL mid-stream ------------------------------------------------------------------------

APP_MODULE = """
import os
import time

import redis
from celery import Celery

import depcache
import depcache_celery

app = Celery("dc_faults", broker=os.environ["TEST_BROKER_URL"], set_as_current=False)
app.conf.update(
    broker_heartbeat=0,
    broker_connection_retry_on_startup=True,
    task_default_queue=os.environ["TEST_TASK_QUEUE"],
)
depcache_celery.install(app)

PREFIX = os.environ["TEST_PREFIX"]
depcache.get_or_create_cache_manager(
    name=PREFIX, config=depcache.RedisConfig(url=os.environ["TEST_REDIS_URL"], prefix=PREFIX)
)
_counts = redis.Redis.from_url(os.environ["TEST_REDIS_URL"])


@depcache_celery.on_event("item.changed")
def item_deps(data):
    # every time an event is routed (so at least once per event), slowly enough to be caught
    _counts.hincrby(PREFIX + ":routed", str(data["n"]), 1)
    time.sleep(0.01)
    return ["item:%d" % data["n"]]
"""

EVENTS = 300


@pytest.fixture
def worker_env(
    tmp_path: Path, rabbitmq_broker: str, names: Names, redis_url: str, prefix: str
) -> tuple[str, dict[str, str]]:
    module = f"dc_faults_{names.uid}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(APP_MODULE))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TEST_BROKER_URL": rabbitmq_broker,
        "TEST_TASK_QUEUE": names.tasks,
        "TEST_PREFIX": prefix,
        "TEST_REDIS_URL": redis_url,
        "DEPCACHE_EXCHANGE": names.exchange,
        "DEPCACHE_QUEUE": names.queue,
        "DEPCACHE_DEAD_LETTER_QUEUE": names.dead,
        "DEPCACHE_PREFETCH_COUNT": "25",
    }
    return module, env


def test_sigkilled_worker_loses_no_event(
    worker_env: tuple[str, dict[str, str]],
    rabbitmq_broker: str,
    names: Names,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
) -> None:
    module, env = worker_env
    manager = depcache.get_or_create_cache_manager(
        name=prefix, config=depcache.RedisConfig(url=redis_url, prefix=prefix)
    )
    for n in range(EVENTS):
        manager.set(f"k{n}", n, dependencies={f"item:{n}"})
    manager.set("other", 0, dependencies={"item:other"})
    counts = redis.Redis.from_url(redis_url, decode_responses=True)
    routed = f"{prefix}:routed"

    # the worker's queue exists before anything is published, so nothing is lost meanwhile
    settings = Settings(exchange=names.exchange, queue=names.queue)
    exchange = Exchange(names.exchange, type="topic", durable=True, auto_delete=False)
    with Connection(rabbitmq_broker) as conn:
        event_queue(settings)(conn.default_channel).declare()
        producer = Producer(conn.default_channel)
        for n in range(EVENTS):
            producer.publish(
                json.dumps({"event": "item.changed", "data": {"n": n}}).encode(),
                exchange=exchange,
                routing_key="item.changed",
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
            )

    first = start_worker_process(tmp_path, module, env, "worker1.log")
    second: subprocess.Popen[bytes] | None = None
    try:

        def consuming() -> bool:
            assert first.poll() is None, (tmp_path / "worker1.log").read_text()
            return int(counts.hlen(routed)) >= 60

        wait_for(consuming, timeout=30, what="the first worker to consume")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        assert first.returncode == -signal.SIGKILL
        killed_at = int(counts.hlen(routed))
        assert killed_at < EVENTS, "the first worker finished before it was killed"
        assert any(manager.exists(f"k{n}") for n in range(EVENTS))

        second = start_worker_process(tmp_path, module, env, "worker2.log")
        running = second

        def all_invalidated() -> bool:
            assert running.poll() is None, (tmp_path / "worker2.log").read_text()
            return not any(manager.exists(f"k{n}") for n in range(EVENTS))

        wait_for(all_invalidated, timeout=30, what="every event's invalidation")
        per_event = counts.hgetall(routed)
        assert sorted(int(n) for n in per_event) == list(range(EVENTS))
        assert all(int(c) >= 1 for c in per_event.values())
        assert manager.exists("other")
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)
        counts.close()
