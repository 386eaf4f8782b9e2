"""The ready-made app as an operator runs it: ``celery -A depcache_celery.worker worker`` in its
own process, configured from the environment, with managers and handlers from DEPCACHE_SETUP."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection

import depcache
from depcache_celery import Settings, event_queue
from tests.support.celery_fixtures import (
    Names,
    fill,
    publish_event,
    wait_for,
)

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]

SETUP_MODULE = """
import os

import depcache
import depcache_celery

depcache.get_or_create_cache_manager(
    name=os.environ["TEST_PREFIX"],
    config=depcache.RedisConfig(url=os.environ["TEST_REDIS_URL"], prefix=os.environ["TEST_PREFIX"]),
)
depcache_celery.on_event("user.updated", deps=["user:{id}", "posts:user:{id}"])
"""

CONFIG_MODULE = """
import os

task_default_queue = os.environ["TEST_TASK_QUEUE"]
broker_heartbeat = 0
"""


@pytest.fixture
def worker_process(
    tmp_path: Path, rabbitmq_broker: str, names: Names, redis_url: str, prefix: str
) -> Iterator[subprocess.Popen[bytes]]:
    setup = f"dc_setup_{names.uid}"
    config = f"dc_config_{names.uid}"
    (tmp_path / f"{setup}.py").write_text(textwrap.dedent(SETUP_MODULE))
    (tmp_path / f"{config}.py").write_text(textwrap.dedent(CONFIG_MODULE))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "CELERY_BROKER_URL": rabbitmq_broker,
        "CELERY_CONFIG_MODULE": config,
        "DEPCACHE_SETUP": setup,
        "DEPCACHE_EXCHANGE": names.exchange,
        "DEPCACHE_QUEUE": names.queue,
        "DEPCACHE_DEAD_LETTER_QUEUE": names.dead,
        "DEPCACHE_BINDING_KEYS": "user.*,order.#",
        "TEST_TASK_QUEUE": names.tasks,
        "TEST_PREFIX": prefix,
        "TEST_REDIS_URL": redis_url,
    }
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "depcache_celery.worker", "worker"),
            *("--pool", "solo", "--loglevel", "INFO", "--without-mingle", "--without-gossip"),
        ],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_standalone_worker_from_the_environment(
    worker_process: subprocess.Popen[bytes],
    rabbitmq_broker: str,
    names: Names,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
) -> None:
    # the same manager as the worker's, in this process: entries written here, invalidated there
    manager = depcache.get_or_create_cache_manager(
        name=prefix, config=depcache.RedisConfig(url=redis_url, prefix=prefix)
    )
    fill(manager, {"u1": {"user:1"}, "p1": {"posts:user:1"}, "u2": {"user:2"}, "o": {"order:9"}})
    # declare the worker's queue now, so that nothing published before it is up is lost
    settings = Settings(
        exchange=names.exchange, queue=names.queue, binding_keys=("user.*", "order.#")
    )
    with Connection(rabbitmq_broker) as conn:
        event_queue(settings)(conn.default_channel).declare()
    user_updated = {"event": "user.updated", "data": {"id": 1}}
    publish_event(rabbitmq_broker, names.exchange, "user.updated", user_updated)
    publish_event(
        rabbitmq_broker,
        names.exchange,
        "order.paid.eu",
        {"event": "order.paid", "data": {}, "dependencies": ["order:9"]},
    )
    publish_event(  # not bound: never reaches the worker
        rabbitmq_broker,
        names.exchange,
        "invoice.sent",
        {"event": "invoice.sent", "data": {}, "dependencies": ["user:2"]},
    )

    def done() -> bool:
        assert worker_process.poll() is None, (tmp_path / "worker.log").read_text()
        return not any(manager.exists(k) for k in ("u1", "p1", "o"))

    wait_for(done, timeout=30, what="the standalone worker")
    assert manager.exists("u2")
