"""A worker SIGKILLed mid-stream on a Redis broker loses no event.

On Redis a message delivered to a consumer is kept in kombu's ``unacked`` hash until it is
acknowledged; a worker killed before acknowledging leaves it there, and a live worker's periodic
sweep puts it back on its queue once it is older than ``visibility_timeout``. The worker app gets
a small ``visibility_timeout`` and a 1 s sweep (``unacked_restore_interval`` with
``unacked_restore_throttle=1``; kombu 5.7 otherwise scans only every 10 x 10 s) through
``broker_transport_options``, so the killed worker's batch comes back after a few seconds.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection, Exchange, Producer

import depcache
from depcache_celery import Settings, event_queue
from tests.support.celery_fixtures import (
    Names,
    _cleanup,
    start_worker_process,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]

EVENTS = 200
STALL_AT = 80  # the first worker hangs routing this event, so it is surely unacknowledged
VISIBILITY_TIMEOUT = 5

APP_MODULE = """
import json
import os
import time

import redis
from celery import Celery

import depcache
import depcache_celery

app = Celery("dc_redis_kill", broker=os.environ["TEST_BROKER_URL"], set_as_current=False)
app.conf.update(
    broker_heartbeat=0,
    broker_connection_retry_on_startup=True,
    broker_transport_options=json.loads(os.environ["TEST_TRANSPORT_OPTIONS"]),
    task_default_queue=os.environ["TEST_TASK_QUEUE"],
)
depcache_celery.install(app)

PREFIX = os.environ["TEST_PREFIX"]
STALL_AT = int(os.environ.get("TEST_STALL_AT", "-1"))
depcache.get_or_create_cache_manager(
    name=PREFIX, config=depcache.RedisConfig(url=os.environ["TEST_REDIS_URL"], prefix=PREFIX)
)
_counts = redis.Redis.from_url(os.environ["TEST_REDIS_URL"])


@depcache_celery.on_event("item.changed")
def item_deps(data):
    # every time an event is routed (so at least once per event)
    _counts.hincrby(PREFIX + ":routed", str(data["n"]), 1)
    if data["n"] == STALL_AT:
        time.sleep(600)  # killed long before
    time.sleep(0.005)
    return ["item:%d" % data["n"]]
"""


def _transport_options(names: Names) -> dict[str, object]:
    return {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
        # kombu's unacked bookkeeping is per Redis database, shared by every app on it: keep this
        # test's apart (and named with the test's uid, so the broker cleanup deletes it)
        "unacked_key": f"dct.{names.uid}.unacked",
        "unacked_index_key": f"dct.{names.uid}.unacked_index",
        "unacked_mutex_key": f"dct.{names.uid}.unacked_mutex",
    }


@pytest.fixture
def redis_broker(redis_broker_url: str, names: Names) -> Iterator[str]:
    """The test Redis as the broker; the test's kombu keys are deleted afterwards."""
    yield redis_broker_url
    _cleanup(redis_broker_url, names)


@pytest.fixture
def worker_env(
    tmp_path: Path, redis_broker: str, names: Names, redis_url: str, prefix: str
) -> tuple[str, dict[str, str]]:
    module = f"dc_redis_kill_{names.uid}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(APP_MODULE))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TEST_BROKER_URL": redis_broker,
        "TEST_TRANSPORT_OPTIONS": json.dumps(_transport_options(names)),
        "TEST_TASK_QUEUE": names.tasks,
        "TEST_PREFIX": prefix,
        "TEST_REDIS_URL": redis_url,
        "DEPCACHE_EXCHANGE": names.exchange,
        "DEPCACHE_QUEUE": names.queue,
        "DEPCACHE_DEAD_LETTER_QUEUE": names.dead,
        "DEPCACHE_PREFETCH_COUNT": "25",
    }
    return module, env


def _unacked_events(broker: redis.Redis, names: Names) -> set[int]:
    """The events of the messages kombu holds as delivered but unacknowledged."""
    events: set[int] = set()
    for raw in broker.hvals(f"dct.{names.uid}.unacked"):
        payload, exchange, _routing_key = json.loads(raw)
        if exchange == names.exchange:
            body = payload["body"]
            if payload["properties"].get("body_encoding") == "base64":
                body = base64.b64decode(body)
            events.add(json.loads(body)["data"]["n"])
    return events


def test_sigkilled_worker_loses_no_event_on_redis(
    worker_env: tuple[str, dict[str, str]],
    redis_broker: str,
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
    broker = redis.Redis.from_url(redis_broker, decode_responses=True)
    routed = f"{prefix}:routed"

    # the queue and its binding exist before anything is published, so nothing is lost
    # meanwhile; the producer declares the topic exchange on its own connection (Redis needs it)
    settings = Settings(exchange=names.exchange, queue=names.queue)
    exchange = Exchange(names.exchange, type="topic", durable=True, auto_delete=False)
    with Connection(redis_broker) as conn:
        event_queue(settings)(conn.default_channel).declare()
        producer = Producer(conn.default_channel)
        for n in range(EVENTS):
            producer.publish(
                json.dumps({"event": "item.changed", "data": {"n": n}}).encode(),
                exchange=exchange,
                routing_key="item.changed",
                declare=[exchange],
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
            )

    first = start_worker_process(
        tmp_path, module, {**env, "TEST_STALL_AT": str(STALL_AT)}, "worker1.log"
    )
    second: subprocess.Popen[bytes] | None = None
    try:

        def stalled() -> bool:
            assert first.poll() is None, (tmp_path / "worker1.log").read_text()
            return bool(counts.hexists(routed, str(STALL_AT)))

        wait_for(stalled, timeout=30, what="the first worker to reach the stalling event")
        delivered = time.monotonic()  # just after kombu put it in its unacked hash
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        assert first.returncode == -signal.SIGKILL
        # the killed worker's batch is still in kombu's unacked hash, not back on the queue, and
        # its invalidation never happened
        lost = _unacked_events(broker, names)
        assert STALL_AT in lost
        assert all(manager.exists(f"k{n}") for n in lost)
        assert not any(manager.exists(f"k{n}") for n in range(STALL_AT) if n not in lost)

        second = start_worker_process(tmp_path, module, env, "worker2.log")
        running = second

        def all_invalidated() -> bool:
            assert running.poll() is None, (tmp_path / "worker2.log").read_text()
            return not any(manager.exists(f"k{n}") for n in range(EVENTS))

        wait_for(all_invalidated, timeout=VISIBILITY_TIMEOUT + 20, what="every invalidation")
        restored_after = time.monotonic() - delivered
        per_event = counts.hgetall(routed)
        assert sorted(int(n) for n in per_event) == list(range(EVENTS))
        assert all(int(c) >= 1 for c in per_event.values())
        assert int(per_event[str(STALL_AT)]) >= 2  # routed again after being put back
        assert manager.exists("other")
        assert not _unacked_events(broker, names) & lost
        # put back once older than visibility_timeout, within a sweep or two after that
        assert VISIBILITY_TIMEOUT - 0.5 <= restored_after < VISIBILITY_TIMEOUT + 15, restored_after
        print(f"unacked {sorted(lost)} invalidated {restored_after:.1f} s after its delivery")
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)
        counts.close()
        broker.close()
