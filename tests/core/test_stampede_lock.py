"""Cross-process stampede protection: N processes missing one key compute it once."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from typing import Any

import pytest
import redis

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps
from depcache.call._keys import KeyTemplate
from depcache.testing import reset_managers

pytestmark = pytest.mark.redis

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _worker(url: str, prefix: str, cluster: bool, start: Any, out: Any) -> None:
    reset_managers()
    config = RedisConfig(url=url, prefix=prefix, cluster=cluster, stampede_lock=True)
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    counter = redis.Redis.from_url(REDIS_URL)

    @cache_with_deps(cache_manager=manager)
    def expensive() -> str:
        counter.incr(f"{prefix}:computations")
        time.sleep(0.5)  # long enough for every other process to miss meanwhile
        add_dependency("report")
        return "report-v1"

    start.wait(30)
    began = time.monotonic()
    value = expensive()
    out.put((value, time.monotonic() - began))


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_processes_missing_one_key_compute_once(
    request: pytest.FixtureRequest, topology: str, redis_url: str, prefix: str
) -> None:
    cluster = topology == "cluster"
    url = request.getfixturevalue("cluster_url") if cluster else redis_url
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, prefix, cluster, start, out)) for _ in range(6)]
    for p in procs:
        p.start()
    time.sleep(2.0)  # spawned interpreters import depcache before the start signal
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    assert [value for value, _ in results] == ["report-v1"] * 6
    computations = redis.Redis.from_url(REDIS_URL).get(f"{prefix}:computations")
    assert int(computations or 0) == 1
    # waiters were woken by the release, not by the 10 s lock timeout
    assert max(elapsed for _, elapsed in results) < 5


def test_a_lock_left_by_a_dead_holder_expires(redis_url: str, prefix: str) -> None:
    config = RedisConfig(
        url=redis_url, prefix=prefix, stampede_lock=True, stampede_lock_seconds=0.5
    )
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    calls: list[int] = []

    @cache_with_deps(cache_manager=manager)
    def value() -> int:
        calls.append(1)
        return 42

    # a holder that died: the lock exists and nobody will release it
    client = redis.Redis.from_url(redis_url)
    full_key = KeyTemplate(value.__wrapped__).key((), {})  # type: ignore[attr-defined]
    client.set(f"{prefix}:l:{{{full_key}}}", "dead-holder", px=500)
    assert value() == 42  # waited at most the lock's lifetime, then computed
    assert calls == [1]
