"""Redis restarted under traffic: results or clear errors, L1 flushed, nothing stale after.

A dedicated password-protected redis-server carries the cache; reader threads call cached
functions through a silent manager (``silent_backend_errors=True``) and a non-silent one, both
with an L1; a writer changes the source of truth and invalidates (retrying until Redis
answers). The server is stopped (SIGTERM, then SIGKILL on alternate cycles, losing all data)
and started again on the same port. Every read is checked by the staleness checker.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps
from tests.reliability.checker import History, ReadLog, SeenLog, WriteLog
from tests.reliability.profile import PROFILE, Profile, write_report
from tests.reliability.traffic import watch_l1
from tests.support.servers import RedisServer, redis_server

pytestmark = [pytest.mark.redis, pytest.mark.timeout(PROFILE.timeout)]

PASSWORD = "s3cret-restart-pw"
KEYS = 8


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A dedicated server this test may stop and start (requires a password)."""
    with redis_server("--requirepass", PASSWORD) as srv:
        yield srv


def _url(server: RedisServer) -> str:
    return f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _manager(url: str, name: str, prefix: str, l1: bool) -> depcache.CacheManager:
    config = RedisConfig(
        url=url, prefix=prefix, socket_timeout=1.0, l1_size=1000 if l1 else 0, l1_max_age=600
    )
    manager = depcache.get_or_create_cache_manager(name, config=config)
    if manager._listener is not None:
        assert manager._listener.subscribed.wait(10)
    return manager


class _Truth:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values = [0] * KEYS

    def read(self, key: int) -> int:
        with self.lock:
            return self.values[key]

    def bump(self, key: int) -> int:
        with self.lock:
            self.values[key] += 1
            return self.values[key]


def _row(manager: depcache.CacheManager, truth: _Truth, silent: bool) -> Callable[[int], int]:
    @cache_with_deps(cache_manager=manager, ttl=600, silent_backend_errors=silent)
    def row(key: int) -> int:
        value = truth.read(key)
        if random.random() < 0.3:
            time.sleep(random.random() * 0.002)
        add_dependency(f"row:{key}")
        return value

    return row


def test_restart_under_traffic(server: RedisServer, profile: Profile) -> None:
    url = _url(server)
    # one cache (prefix) per kind of caller: managers sharing a prefix under different names
    # do not share dependencies (see test_nested_staleness.py)
    silent = _manager(url, "restart-silent", "restart-silent", l1=True)
    loud = _manager(url, "restart-loud", "restart-loud", l1=True)
    writers = [
        depcache.CacheManager(RedisConfig(url=url, prefix=m.prefix, socket_timeout=1.0), m.name)
        for m in (silent, loud)
    ]
    truth = _Truth()
    # the writer is another manager: the readers' L1s learn of its invalidations by pub/sub
    seen = {"silent": SeenLog(), "loud": SeenLog()}
    watch_l1(silent, seen["silent"])
    watch_l1(loud, seen["loud"])
    functions = {"silent": _row(silent, truth, True), "loud": _row(loud, truth, False)}
    stop = threading.Event()
    logs: dict[str, list[ReadLog]] = {"silent": [], "loud": []}
    loud_errors: list[tuple[float, BaseException]] = []
    silent_errors: list[BaseException] = []
    writes = WriteLog()
    outages: list[tuple[float, float]] = []

    def reader(kind: str, seed: int) -> None:
        rng = random.Random(seed)
        log = ReadLog()
        logs[kind].append(log)
        fn = functions[kind]
        while not stop.is_set():
            key = rng.randrange(KEYS)
            start = time.monotonic()
            try:
                version = fn(key)
            except Exception as exc:
                if kind == "loud":
                    loud_errors.append((start, exc))
                else:
                    silent_errors.append(exc)
                time.sleep(0.01)
                continue
            log.add(key, start, time.monotonic(), version)
            if len(log) % 200 == 0:
                time.sleep(0.001)  # L1 hits never release the GIL: let the writer run

    def write() -> None:
        rng = random.Random(99)
        while not stop.is_set():
            key = rng.randrange(KEYS)
            started = time.monotonic()
            version = truth.bump(key)
            for writer in writers:  # another process, in effect: its own connections, no L1
                while True:  # an invalidation must land: retry while Redis is away
                    try:
                        writer.invalidate_dependencies(f"row:{key}", f"ver:{key}:{version}")
                        break
                    except depcache.BackendError:
                        time.sleep(0.05)
            writes.add(key, version, started, time.monotonic())
            time.sleep(rng.random() * 0.01)

    threads = [threading.Thread(target=reader, args=("silent", i)) for i in range(2)]
    threads += [threading.Thread(target=reader, args=("loud", 10 + i)) for i in range(2)]
    threads.append(threading.Thread(target=write))
    for t in threads:
        t.start()
    l1s = [m.l1 for m in (silent, loud)]
    flushed_while_down = []
    try:
        for cycle in range(profile.restart_cycles):
            time.sleep(1.0)
            assert all(l1 is not None and len(l1) > 0 for l1 in l1s)  # the L1s serve
            down = time.monotonic()
            if cycle % 2:
                server.executor.kill(wait=True)  # SIGKILL
            else:
                server.stop()  # SIGTERM
            # the listeners notice: L1s flushed and serving nothing until resubscribed
            flushed_while_down.append(
                _wait(lambda: all(l1 is not None and not l1.active for l1 in l1s))
            )
            assert all(l1 is not None and len(l1) == 0 for l1 in l1s)
            time.sleep(1.0)  # traffic against a dead server
            server.start()
            assert _wait(lambda: all(l1 is not None and l1.active for l1 in l1s))
            outages.append((down, time.monotonic()))
        time.sleep(1.5)  # traffic after the last recovery
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        for writer in writers:
            writer.close()

    history = History()
    history.writes.extend(writes)
    reads = {}
    for kind, kind_logs in logs.items():
        merged = ReadLog()
        for log in kind_logs:
            merged.extend(log)
        history.add_reads(kind, merged)
        history.add_seen(kind, seen[kind])
        reads[kind] = merged
    verdict = history.check()
    last_up = outages[-1][1]
    during = {
        kind: sum(1 for _k, s, _e, _v in log if any(a <= s <= b for a, b in outages))
        for kind, log in reads.items()
    }
    after = {kind: sum(1 for _k, s, _e, _v in log if s > last_up) for kind, log in reads.items()}
    messages = sorted({str(exc) for _s, exc in loud_errors})
    figures = {
        "restarts": profile.restart_cycles,
        "outage_seconds": [round(b - a, 3) for a, b in outages],
        "silent_reads_during_outages": during["silent"],
        "loud_reads_during_outages": during["loud"],
        "reads_after_recovery": after,
        "loud_errors": len(loud_errors),
        "silent_errors": len(silent_errors),
        "error_example": messages[:1],
        **verdict.figures(),
    }
    write_report(
        "restart",
        figures,
        [
            f"{profile.restart_cycles} restart(s) (SIGTERM, SIGKILL alternately) under traffic: "
            f"{verdict.reads:,} reads checked, {len(verdict.stale)} stale; silent callers got "
            f"{during['silent']:,} computed results during outages and no error; non-silent "
            f"callers got {len(loud_errors):,} BackendErrors, e.g. `{messages[:1]}`; L1s flushed "
            "while the server was down and served again after resubscribing.",
        ],
    )
    # silent callers always get a result, computed while Redis is down
    assert silent_errors == []
    assert during["silent"] > 0
    # non-silent callers get depcache's error naming the server, never the password
    assert loud_errors
    for _start, exc in loud_errors:
        assert isinstance(exc, depcache.BackendError), repr(exc)
        assert f"127.0.0.1:{server.port}" in str(exc)
        assert PASSWORD not in str(exc)
    assert all(flushed_while_down)
    # after recovery everyone is served again, and no read anywhere was stale
    assert after["silent"] > 0
    assert after["loud"] > 0
    assert verdict.stale == [], verdict.figures()
    assert verdict.impossible == []
    assert verdict.writes >= 20


def test_computation_spanning_a_restart_is_not_stored_stale(server: RedisServer) -> None:
    url = _url(server)
    reader = _manager(url, "span-reader", "span", l1=False)
    writer = _manager(url, "span-writer", "span", l1=False)
    for i in range(5):
        writer.invalidate_dependency(f"warmup:{i}")  # the epoch is 5 before the restart
    db = {"row": 1}
    read_done, go_on = threading.Event(), threading.Event()
    results: list[Any] = []

    @cache_with_deps(cache_manager=reader, silent_backend_errors=True)
    def row() -> int:
        value = db["row"]  # read before the restart (the lookup read epoch 5)...
        if not go_on.is_set():
            read_done.set()
            assert go_on.wait(20)  # ... and stall across it
        add_dependency("row")
        return value

    slow = threading.Thread(target=lambda: results.append(row()))
    slow.start()
    assert read_done.wait(10)
    server.stop()
    server.start()  # empty: the epoch starts again from 0
    db["row"] = 2
    assert _wait(lambda: _invalidated(writer, "row"))  # epoch 1, after the value changed
    go_on.set()
    slow.join(20)
    assert results == [1]  # the slow call returns what it computed...
    assert row() == 2  # ... but must not have stored it: the invalidation came after its read


def _invalidated(manager: depcache.CacheManager, dependency: str) -> bool:
    try:
        manager.invalidate_dependency(dependency)
    except depcache.BackendError:
        return False
    return True
