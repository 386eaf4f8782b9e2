"""No stale set: a result computed before an invalidation is never served after it.

A deterministic interleaving per backend, then randomized runs with threads and with
processes that check every read against the history of writes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import depcache
from depcache import ConfigBase, RedisConfig, add_dependency, cache_with_deps
from depcache.testing import reset_managers

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _require_redis() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is required in CI and is not reachable at {REDIS_URL}")
        pytest.skip(f"no Redis at {REDIS_URL}")
    return client


@pytest.fixture
def prefix() -> Iterator[str]:
    value = f"stale{uuid.uuid4().hex[:10]}"
    yield value
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{value}:*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.ConnectionError:
        pass


def _manager(
    kind: str, prefix: str, request: pytest.FixtureRequest | None = None
) -> depcache.CacheManager:
    if kind == "cluster":
        assert request is not None
        url = request.getfixturevalue("cluster_url")
        return depcache.get_or_create_cache_manager(
            prefix, config=RedisConfig(url=url, prefix=prefix, cluster=True)
        )
    if kind == "redis":
        _require_redis()
        return depcache.get_or_create_cache_manager(
            prefix, config=RedisConfig(url=REDIS_URL, prefix=prefix)
        )
    return depcache.get_or_create_cache_manager(
        prefix, config=ConfigBase(prefix=prefix, backend="memory")
    )


@pytest.mark.parametrize("kind", ["memory", "redis", "cluster"])
def test_invalidation_during_computation_refuses_the_store(
    kind: str, prefix: str, request: pytest.FixtureRequest
) -> None:
    manager = _manager(kind, prefix, request)
    db = {"user": "old"}
    read_done = threading.Event()
    go_on = threading.Event()
    results: list[str] = []

    @cache_with_deps(cache_manager=manager)
    def profile() -> str:
        value = db["user"]  # read the source of truth ...
        if not go_on.is_set():
            read_done.set()
            assert go_on.wait(10)  # ... and stall while a writer updates and invalidates
        add_dependency("user")  # declared after the read, as real code often does
        return value

    slow = threading.Thread(target=lambda: results.append(profile()))
    slow.start()
    assert read_done.wait(10)
    db["user"] = "new"
    manager.invalidate_dependency("user")  # completes while profile() still computes
    go_on.set()
    slow.join(10)
    assert results == ["old"]  # the slow call itself returns what it computed
    assert profile() == "new"  # but it was not stored: the next call recomputes
    assert profile() == "new"


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_store_before_invalidation_is_removed_by_it(kind: str, prefix: str) -> None:
    manager = _manager(kind, prefix)
    db = {"user": "old"}

    @cache_with_deps(cache_manager=manager)
    def profile() -> str:
        add_dependency("user")
        return db["user"]

    assert profile() == "old"
    db["user"] = "new"
    assert manager.invalidate_dependency("user") == 1
    assert profile() == "new"


class History:
    """Writes (version, time the invalidation completed) and reads (start time, version)."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, int, float]] = []
        self.reads: list[tuple[str, float, int]] = []

    def stale_reads(self) -> list[tuple[str, float, int, int]]:
        done: dict[str, list[tuple[float, int]]] = {}
        for key, version, finished in self.writes:
            done.setdefault(key, []).append((finished, version))
        stale = []
        for key, started, version in self.reads:
            newest = max((v for t, v in done.get(key, []) if t < started), default=0)
            if version < newest:
                stale.append((key, started, version, newest))
        return stale


@pytest.mark.parametrize("kind", ["memory", "redis", "cluster"])
def test_threads_never_read_stale(kind: str, prefix: str, request: pytest.FixtureRequest) -> None:
    """Readers and writers race; on a cluster this found concurrent invalidations returning
    before an entry detached by another one was deleted (fixed by the pending sets)."""
    manager = _manager(kind, prefix, request)
    keys = [f"k{i}" for i in range(4)]
    db = dict.fromkeys(keys, 0)
    lock = threading.Lock()
    history = History()
    deadline = time.monotonic() + 3.0

    @cache_with_deps(cache_manager=manager)
    def read(key: str) -> int:
        add_dependency(f"row:{key}")
        with lock:
            value = db[key]
        time.sleep(random.random() * 0.002)  # widen the race window
        return value

    def reader() -> None:
        while time.monotonic() < deadline:
            key = random.choice(keys)
            started = time.monotonic()
            history.reads.append((key, started, read(key)))

    def writer() -> None:
        while time.monotonic() < deadline:
            key = random.choice(keys)
            with lock:
                db[key] += 1
                version = db[key]
            manager.invalidate_dependency(f"row:{key}")
            history.writes.append((key, version, time.monotonic()))
            time.sleep(random.random() * 0.003)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    threads += [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(history.reads) > 500
    assert len(history.writes) > 50
    assert history.stale_reads() == []


def _process_worker(
    role: str, prefix: str, seconds: float, out: Any, seed: int
) -> None:  # runs in a child process
    rng = random.Random(seed)
    reset_managers()
    manager = depcache.get_or_create_cache_manager(
        prefix, config=RedisConfig(url=REDIS_URL, prefix=prefix)
    )
    truth = redis.Redis.from_url(REDIS_URL)
    keys = [f"k{i}" for i in range(3)]

    @cache_with_deps(cache_manager=manager)
    def read(key: str) -> int:
        add_dependency(f"row:{key}")
        value = int(truth.get(f"{prefix}:truth:{key}") or 0)
        time.sleep(rng.random() * 0.002)
        return value

    records = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        key = rng.choice(keys)
        if role == "reader":
            started = time.monotonic()  # CLOCK_MONOTONIC is system-wide on Linux
            records.append(("r", key, started, read(key)))
        else:
            version = int(truth.incr(f"{prefix}:truth:{key}"))
            manager.invalidate_dependency(f"row:{key}")
            records.append(("w", key, time.monotonic(), version))
            time.sleep(rng.random() * 0.004)
    out.put(records)


def test_processes_never_read_stale(prefix: str) -> None:
    _require_redis()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    roles = ["reader"] * 4 + ["writer"] * 2
    procs = [
        ctx.Process(target=_process_worker, args=(role, prefix, 4.0, out, i))
        for i, role in enumerate(roles)
    ]
    for p in procs:
        p.start()
    history = History()
    for _ in procs:
        for kind, key, stamp, version in out.get(timeout=60):
            if kind == "r":
                history.reads.append((key, stamp, version))
            else:
                history.writes.append((key, version, stamp))
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    assert len(history.reads) > 300
    assert len(history.writes) > 50
    assert history.stale_reads() == []


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_index_does_not_keep_deleted_entries_forever(kind: str, prefix: str) -> None:
    """Entries without TTL that are deleted (or evicted) are pruned from the index by stores."""
    manager = _manager(kind, prefix)
    for i in range(200):
        manager.set(f"gone{i}", i, dependencies=["popular"])
    manager.delete(*(f"gone{i}" for i in range(200)))
    for i in range(400):
        manager.set(f"live{i % 20}", i, dependencies=["popular"])
    if kind == "redis":
        size = redis.Redis.from_url(REDIS_URL).zcard(f"{prefix}:d:{{popular}}:i")
    else:
        size = len(manager.backend.store_data._indexes["popular"])  # type: ignore[attr-defined]
    assert size < 100  # 200 dead + 20 live names before pruning
