"""Single flight: concurrent misses of one key compute once, with real threads and tasks."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import depcache
from depcache import add_dependency, cache_with_deps
from tests.conftest import MakeManager


def test_threads_missing_one_key_compute_once(make_manager: MakeManager) -> None:
    manager = make_manager()
    calls: list[int] = []
    gate = threading.Event()

    @cache_with_deps(cache_manager=manager)
    def slow(x: int) -> dict[str, int]:
        calls.append(x)
        gate.wait(5)  # hold the leader until every thread has arrived
        add_dependency("d")
        return {"x": x}

    results: list[dict[str, int]] = []
    threads = [threading.Thread(target=lambda: results.append(slow(1))) for _ in range(16)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # let them all reach the flight (a late one would find the entry anyway)
    gate.set()
    for t in threads:
        t.join(10)
    assert results == [{"x": 1}] * 16
    assert calls == [1]


async def test_tasks_missing_one_key_compute_once(make_manager: MakeManager) -> None:
    manager = make_manager()
    calls: list[int] = []

    @cache_with_deps(cache_manager=manager)
    async def slow(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.2)
        return x * 10

    assert await asyncio.gather(*(slow(3) for _ in range(50))) == [30] * 50
    assert calls == [3]


async def test_an_exception_is_shared_with_the_followers(make_manager: MakeManager) -> None:
    manager = make_manager()
    calls: list[int] = []

    @cache_with_deps(cache_manager=manager)
    async def failing() -> int:
        calls.append(1)
        await asyncio.sleep(0.1)
        raise LookupError("nope")

    results = await asyncio.gather(*(failing() for _ in range(10)), return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results)
    assert calls == [1]


async def test_followers_compute_themselves_when_the_leader_is_cancelled(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()
    started = asyncio.Event()
    calls: list[str] = []

    @cache_with_deps(cache_manager=manager)
    async def value() -> str:
        calls.append("x")
        started.set()
        await asyncio.sleep(0.2)
        return "done"

    leader = asyncio.create_task(value())
    await started.wait()
    follower = asyncio.create_task(value())
    await asyncio.sleep(0.05)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await follower == "done"
    assert len(calls) == 2


def test_a_call_after_an_invalidation_does_not_share_an_older_computation(
    make_manager: MakeManager,
) -> None:
    manager = make_manager()
    db = {"v": "old"}
    in_leader = threading.Event()
    release = threading.Event()

    @cache_with_deps(cache_manager=manager)
    def read() -> str:
        value = db["v"]
        add_dependency("row")
        if not release.is_set():
            in_leader.set()
            release.wait(5)
        return value

    first: list[str] = []
    leader = threading.Thread(target=lambda: first.append(read()))
    leader.start()
    assert in_leader.wait(5)
    db["v"] = "new"
    manager.invalidate_dependency("row")  # completes while the leader still computes
    release.set()
    assert read() == "new"  # began after the invalidation: must not get "old"
    leader.join(5)
    assert first == ["old"]


def test_single_flight_can_be_switched_off(prefix: str) -> None:
    config = depcache.ConfigBase(prefix=prefix, backend="memory", single_flight=False)
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    assert manager.sync_flights is None
    assert manager.async_flights is None
    calls: list[int] = []
    gate = threading.Barrier(4, timeout=5)

    @cache_with_deps(cache_manager=manager)
    def f() -> int:
        calls.append(1)
        gate.wait()  # only passes if all four compute at once
        return 1

    threads = [threading.Thread(target=f) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 4
