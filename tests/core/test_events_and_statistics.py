"""The seed README's promises on events and statistics, over memory and Redis, sync and async."""

from __future__ import annotations

import logging

import pytest

import depcache
from depcache import CacheEventType, StatsCollector, current_cache_key
from tests.support.helpers import Calls, cached, call, op


async def test_events_and_stats(manager: depcache.CacheManager, mode: str) -> None:
    stats = StatsCollector()
    manager.on_all_events(stats)
    hits: list[depcache.CacheEvent] = []
    manager.on_event(CacheEventType.HIT, hits.append)
    keys: list[str | None] = []

    @cached(mode, cache_manager=manager, dependencies=["ev"])
    def f(x: int) -> int:
        keys.append(current_cache_key())
        return x

    await call(f, 1)  # miss + set
    await call(f, 1)  # hit
    await call(f, 2)  # miss + set
    assert stats.stats["hits"] == 1
    assert stats.stats["misses"] == 2
    assert stats.stats["sets"] == 2
    assert stats.get_hit_ratio() == pytest.approx(1 / 3)

    assert len(hits) == 1
    assert hits[0].event_type == CacheEventType.HIT
    assert keys[0] is not None
    assert keys[0] in hits[0].key

    await op(manager, mode, "invalidate_dependency", "ev")
    assert stats.stats["invalidations"] >= 1
    await op(manager, mode, "set", "manual", 1)
    await op(manager, mode, "delete", "manual")
    assert stats.stats["deletes"] >= 1
    await op(manager, mode, "clear")
    assert stats.stats["clears"] >= 1
    assert isinstance(stats.get_stats(), dict)

    stats.reset()
    assert stats.stats["hits"] == 0
    assert stats.stats["misses"] == 0
    assert stats.get_hit_ratio() == 0


async def test_failing_event_callbacks_do_not_break_calls(
    manager: depcache.CacheManager, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    def explode(event: depcache.CacheEvent) -> None:
        raise RuntimeError("event callback exploded")

    manager.on_all_events(explode)
    manager.on_event(CacheEventType.HIT, explode)
    calls = Calls()

    @cached(mode, cache_manager=manager, dependencies=["d"])
    def f() -> int:
        calls()
        return 1

    assert await call(f) == 1
    assert await call(f) == 1
    assert calls.count == 1
    assert await op(manager, mode, "invalidate_dependency", "d") == 1
    assert caplog.records
