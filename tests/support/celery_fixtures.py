"""Fixtures for the depcache_celery tests: real brokers (RabbitMQ, Redis) and embedded workers.

A broker that does not answer skips the test locally and fails it in CI (``CI`` set). Every
test gets its own exchange and queue names, deleted from the broker afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.worker import WorkController
from kombu import Connection, Exchange, Producer, Queue

import depcache
import depcache.metrics
import depcache_celery
import depcache_celery.tracing

DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
REDIS_BROKER_DB = 1  # the Redis broker's keys stay out of the caches' database


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """The URL of a reachable RabbitMQ (``RABBITMQ_URL``, default the machine's)."""
    url = os.environ.get("RABBITMQ_URL") or DEFAULT_RABBITMQ_URL
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        _unavailable(f"RabbitMQ at {urlsplit(url).hostname} is not reachable: {exc!r}")
    return url


@pytest.fixture(scope="session")
def redis_broker_url(redis_url: str) -> str:
    """The test Redis server as a Celery broker, in its own database."""
    parts = urlsplit(redis_url)
    return urlunsplit(parts._replace(path=f"/{REDIS_BROKER_DB}"))


@dataclass(frozen=True)
class Names:
    """The broker entities of one test."""

    uid: str
    exchange: str
    queue: str
    dead: str
    tasks: str

    def conf(self) -> dict[str, Any]:
        return {
            "depcache_exchange": self.exchange,
            "depcache_queue": self.queue,
            "depcache_dead_letter_queue": self.dead,
            "task_default_queue": self.tasks,
        }


@pytest.fixture
def names() -> Names:
    uid = uuid.uuid4().hex[:10]
    return Names(
        uid=uid,
        exchange=f"dct.{uid}.events",
        queue=f"dct.{uid}.worker",
        dead=f"dct.{uid}.dead",
        tasks=f"dct.{uid}.tasks",
    )


def make_app(broker_url: str, names: Names, **conf: Any) -> Celery:
    """A Celery app on ``broker_url`` using the test's names (no result backend)."""
    app = Celery(f"test-{names.queue}", broker=broker_url, set_as_current=False)
    app.conf.update(
        broker_heartbeat=0,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=2,
        worker_hijack_root_logger=False,
        **names.conf(),
    )
    app.conf.update(conf)
    return app


@contextlib.contextmanager
def embedded_worker(app: Celery) -> Iterator[WorkController]:
    """A real worker in a thread of this process (so it sees this process's managers)."""
    with start_worker(
        app, pool="solo", perform_ping_check=False, shutdown_timeout=20, loglevel="WARNING"
    ) as worker:
        yield worker


def _cleanup(broker_url: str, names: Names) -> None:
    """Delete the test's queues and exchanges (and, on Redis, kombu's keys naming them)."""
    if broker_url.startswith("redis"):
        client = redis.Redis.from_url(broker_url)
        try:
            keys = list(client.scan_iter(match=f"*{names.uid}*", count=1000))
            if keys:
                client.delete(*keys)
            for member in client.zrange("_kombu.binding_deadlines", 0, -1):
                if names.uid.encode() in member:
                    client.zrem("_kombu.binding_deadlines", member)
        finally:
            client.close()
        return
    with Connection(broker_url) as conn:
        channel = conn.default_channel
        for queue in (names.queue, names.dead, names.tasks):
            channel.queue_delete(queue)
        for exchange in (names.exchange, names.tasks):
            channel.exchange_delete(exchange)


@pytest.fixture(params=["rabbitmq", "redis"])
def broker_url(request: pytest.FixtureRequest, names: Names) -> Iterator[str]:
    """Each test that asks for it runs on RabbitMQ and on Redis as the broker."""
    fixture = "rabbitmq_url" if request.param == "rabbitmq" else "redis_broker_url"
    url = str(request.getfixturevalue(fixture))
    yield url
    _cleanup(url, names)


@pytest.fixture
def rabbitmq_broker(rabbitmq_url: str, names: Names) -> Iterator[str]:
    """RabbitMQ as the broker; the test's entities are deleted afterwards."""
    yield rabbitmq_url
    _cleanup(rabbitmq_url, names)


Managers = tuple[depcache.CacheManager, depcache.CacheManager]


@pytest.fixture
def two_managers(redis_url: str, prefix: str) -> Managers:
    """Two registered managers on the test Redis, with prefixes ``<prefix>a`` and ``<prefix>b``."""
    return tuple(  # type: ignore[return-value]
        depcache.get_or_create_cache_manager(
            name=f"{prefix}{suffix}",
            config=depcache.RedisConfig(url=redis_url, prefix=f"{prefix}{suffix}"),
        )
        for suffix in ("a", "b")
    )


@pytest.fixture(autouse=True)
def _reset_stats() -> Iterator[None]:
    depcache_celery.stats.reset()
    yield
    # a worker serving metrics or tracing turned them on for the whole process
    depcache.metrics.disable()
    depcache_celery.tracing.disable()


# --- helpers --------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "it") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def publish_event(
    broker_url: str,
    exchange_name: str,
    routing_key: str,
    body: bytes | str | dict[str, Any],
    **properties: Any,
) -> None:
    """Publish ``body`` as is (a dict as JSON) to the topic exchange, with a plain kombu
    Producer that declares the exchange on its own connection (needed on Redis)."""
    payload = json.dumps(body).encode() if isinstance(body, dict) else body
    exchange = Exchange(exchange_name, type="topic", durable=True, auto_delete=False)
    with Connection(broker_url) as conn:
        producer = Producer(conn.default_channel)
        producer.publish(
            payload,
            exchange=exchange,
            routing_key=routing_key,
            content_type=properties.pop("content_type", "application/json"),
            content_encoding=properties.pop("content_encoding", "utf-8"),
            delivery_mode=2,
            declare=[exchange],
            **properties,
        )


def read_queue(broker_url: str, queue_name: str, count: int, timeout: float = 10.0) -> list[Any]:
    """Take ``count`` messages from a durable queue (acknowledging them), waiting for them."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    with Connection(broker_url) as conn:
        queue = Queue(queue_name, durable=True, auto_delete=False)(conn.default_channel)
        queue.declare()
        while len(got) < count and time.monotonic() < deadline:
            message = queue.get(no_ack=True)
            if message is None:
                time.sleep(0.05)
                continue
            got.append(message)
    if len(got) < count:
        pytest.fail(f"{queue_name}: {len(got)} message(s) of {count} after {timeout} s")
    return got


def fill(manager: depcache.CacheManager, entries: dict[str, set[str]]) -> None:
    """Store one entry per key, depending on the given dependencies."""
    for key, deps in entries.items():
        manager.set(key, key, dependencies=deps)
        assert manager.exists(key)


def start_worker_process(
    workdir: Path,
    module: str,
    env: dict[str, str],
    log: str,
    *options: str,
) -> subprocess.Popen[bytes]:
    """``celery -A module worker`` as a subprocess in ``workdir``, logging to ``workdir/log``:
    a worker that a test can SIGKILL. ``options`` replace the default ``--pool solo``."""
    with (workdir / log).open("wb") as out:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", module, "worker"),
                *(options or ("--pool", "solo")),
                "--loglevel",
                "WARNING",
                *("--without-mingle", "--without-gossip", "--without-heartbeat"),
            ],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a worker subprocess (kill it if it does not stop within 15 s)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
