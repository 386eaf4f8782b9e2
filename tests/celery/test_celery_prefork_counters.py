"""Counters of prefork pool children reach the worker's main process: a real ``celery worker
--pool prefork -c 2`` subprocess (children replaced every few tasks) runs the tasks in its
children, and both ``inspect_stats`` and the Prometheus endpoint of the main process report
them, added to the bus consumer's counts of the main process, each counted once."""

from __future__ import annotations

import os
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import depcache
from depcache_celery import install
from depcache_celery.worker.monitoring import inspect_stats
from tests.support.celery_fixtures import (
    Names,
    make_app,
    publish_event,
    start_worker_process,
    stop_process,
    wait_for,
)
from tests.support.servers import free_port

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]

APP_MODULE = """
import os

import redis
from celery import Celery

import depcache
import depcache_celery

app = Celery("dc_prefork", broker=os.environ["TEST_BROKER_URL"], set_as_current=False)
app.conf.update(
    broker_heartbeat=0,
    broker_connection_retry_on_startup=True,
    task_default_queue=os.environ["TEST_TASK_QUEUE"],
    worker_max_tasks_per_child=3,  # children are replaced: their counts must stay
    worker_prefetch_multiplier=1,
)
depcache_celery.install(app)

PREFIX = os.environ["TEST_PREFIX"]
depcache.get_or_create_cache_manager(
    name=PREFIX, config=depcache.RedisConfig(url=os.environ["TEST_REDIS_URL"], prefix=PREFIX)
)
_pids = redis.Redis.from_url(os.environ["TEST_REDIS_URL"])


@depcache_celery.on_event("item.changed")
def item_deps(data):
    _pids.hset(PREFIX + ":pids", str(data["n"]), os.getpid())  # which process routed it
    return ["item:%d" % data["n"]]
"""

BUS = range(0, 4)  # bus events: the consumer, in the main process
INVALIDATE = range(4, 12)  # depcache.invalidate tasks: pool children
EVENT = range(12, 18)  # depcache.event tasks: pool children
ITEMS = 18


@pytest.fixture
def prefork_worker(
    tmp_path: Path, rabbitmq_broker: str, names: Names, redis_url: str, prefix: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, int]]:
    """``celery worker --pool prefork -c 2`` on the test's names: (process, node name prefix,
    Prometheus port)."""
    module = f"dc_prefork_{names.uid}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(APP_MODULE))
    port = free_port()
    node = f"dcprefork-{names.uid}"
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
        "DEPCACHE_PROMETHEUS_PORT": str(port),
    }
    process = start_worker_process(
        tmp_path,
        module,
        env,
        "worker.log",
        *("--pool", "prefork", "--concurrency", "2", "--hostname", f"{node}@%h"),
    )
    try:
        yield process, node, port
    finally:
        stop_process(process)
        print((tmp_path / "worker.log").read_text())


def test_counts_of_pool_children_reach_inspect_and_prometheus(
    prefork_worker: tuple[subprocess.Popen[bytes], str, int],
    rabbitmq_broker: str,
    names: Names,
    redis_url: str,
    prefix: str,
) -> None:
    process, node, port = prefork_worker
    manager = depcache.get_or_create_cache_manager(
        name=prefix, config=depcache.RedisConfig(url=redis_url, prefix=prefix)
    )
    for n in range(ITEMS):
        manager.set(f"k{n}", n, dependencies={f"item:{n}"})
    manager.set("other", 0, dependencies={"item:other"})
    client = make_app(rabbitmq_broker, names)
    install(client)

    def counters() -> dict[str, object]:
        assert process.poll() is None, "the worker exited"
        ours = {h: c for h, c in inspect_stats(client, timeout=2.0).items() if h.startswith(node)}
        assert len(ours) <= 1
        return next(iter(ours.values()), {})

    wait_for(lambda: bool(counters()), timeout=60, what="the worker to answer")

    # the bus consumer counts in the main process before children are forked again
    for n in BUS:
        publish_event(
            rabbitmq_broker,
            names.exchange,
            "item.changed",
            {"event": "item.changed", "data": {"n": n}},
        )
    wait_for(lambda: not any(manager.exists(f"k{n}") for n in BUS), timeout=20, what="bus events")
    for n in INVALIDATE:
        client.send_task("depcache.invalidate", args=[[f"item:{n}"]])
    for n in EVENT:
        client.send_task("depcache.event", args=["item.changed", {"n": n}])
    wait_for(
        lambda: not any(manager.exists(f"k{n}") for n in range(ITEMS)), timeout=30, what="tasks"
    )

    tasks = len(INVALIDATE) + len(EVENT)
    expected = {
        "events": len(BUS) + len(EVENT),
        "dependencies": ITEMS,
        "entries_removed": ITEMS,
        "retries": 0,
        "target_failures": {},
        "dead_letters": {},
    }
    # a child saves its counts right after its task: wait until all of them are in
    wait_for(
        lambda: all(counters().get(k) == v for k, v in expected.items()),
        timeout=20,
        what=f"the counters to show {expected}",
    )
    counts = counters()
    assert isinstance(counts["batches"], int)
    assert 1 <= counts["batches"] <= len(BUS)  # only the bus consumer counts batches
    assert counts["unhandled_events"] == 0

    # the tasks ran in child processes (several: they are replaced every 3 tasks)
    pids = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        routed = {int(n): int(pid) for n, pid in pids.hgetall(f"{prefix}:pids").items()}
    finally:
        pids.delete(f"{prefix}:pids")
        pids.close()
    assert {routed[n] for n in BUS} == {process.pid}
    children = {routed[n] for n in EVENT}
    assert process.pid not in children
    assert len(children) >= 2
    assert tasks > 3 * 2  # so some children were replaced

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    assert f"depcache_celery_events_total {float(len(BUS) + len(EVENT))}" in lines
    assert f"depcache_celery_dependencies_total {float(ITEMS)}" in lines
    assert f"depcache_celery_entries_removed_total {float(ITEMS)}" in lines
    assert manager.exists("other")
