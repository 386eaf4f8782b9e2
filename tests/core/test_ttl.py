"""The seed README's promises on TTL, over memory and Redis, sync and async."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import depcache
from depcache import cache_with_deps, current_cache_key, set_cache_ttl
from tests.conftest import MakeManager
from tests.support.helpers import Calls, cached, call, op


async def test_decorator_ttl_and_set_cache_ttl_precedence(
    manager: depcache.CacheManager, mode: str
) -> None:
    keys: dict[str, str | None] = {}

    @cached(mode, cache_manager=manager, ttl=100)
    def decorator_ttl() -> str:
        keys["decorator"] = current_cache_key()
        return "a"

    @cached(mode, cache_manager=manager, ttl=100)
    def overridden() -> str:
        keys["override"] = current_cache_key()
        set_cache_ttl(500)
        return "b"

    @cached(mode, cache_manager=manager)
    def forever() -> str:
        keys["forever"] = current_cache_key()
        return "c"

    @cached(mode, cache_manager=manager)
    def set_only() -> str:
        keys["set_only"] = current_cache_key()
        set_cache_ttl(50)
        return "d"

    @cached(mode, cache_manager=manager, ttl=100)
    def unbounded() -> str:
        keys["unbounded"] = current_cache_key()
        set_cache_ttl(None)
        return "e"

    for fn in (decorator_ttl, overridden, forever, set_only, unbounded):
        await call(fn)

    assert all(isinstance(k, str) and k for k in keys.values())
    assert 95 <= await op(manager, mode, "ttl", keys["decorator"]) <= 100
    assert 495 <= await op(manager, mode, "ttl", keys["override"]) <= 500
    assert await op(manager, mode, "ttl", keys["forever"]) == -1
    assert 45 <= await op(manager, mode, "ttl", keys["set_only"]) <= 50
    assert await op(manager, mode, "ttl", keys["unbounded"]) == -1
    assert await op(manager, mode, "ttl", "no-such-key") == -2


async def test_entries_expire(manager: depcache.CacheManager, mode: str) -> None:
    calls = Calls()

    @cached(mode, cache_manager=manager, ttl=1)
    def short(x: int) -> int:
        calls("short")
        return x

    @cached(mode, cache_manager=manager, ttl=100)
    def shortened(x: int) -> int:
        calls("shortened")
        set_cache_ttl(1)
        return x

    @cached(mode, cache_manager=manager, ttl=0.5)
    def fractional(x: int) -> int:
        calls("fractional")
        return x

    @cached(mode, cache_manager=manager, ttl=100)
    def long(x: int) -> int:
        calls("long")
        return x

    functions = (short, shortened, fractional, long)
    for fn in functions:
        await call(fn, 1)
        await call(fn, 1)
    assert calls.count == 4
    await asyncio.sleep(1.3)
    for fn in functions:
        await call(fn, 1)
    assert calls.args[4:] == [("short",), ("shortened",), ("fractional",)]


@pytest.mark.parametrize("ttl", [0, -1, "10", float("nan")])
def test_bad_ttl_is_rejected_at_decoration(ttl: Any) -> None:
    def f() -> int:
        return 1

    with pytest.raises(ValueError, match="ttl"):
        cache_with_deps(ttl=ttl)(f)


async def test_computation_longer_than_guard_window_is_not_stored(
    make_manager: MakeManager, mode: str
) -> None:
    manager = make_manager("guard", guard_seconds=0.1)
    calls = Calls()

    @cached(mode, cache_manager=manager)
    def slow(seconds: float) -> int:
        calls()
        time.sleep(seconds)
        return calls.count

    assert await call(slow, 0.2) == 1
    assert await call(slow, 0.2) == 2  # not stored: it outlived the guard window
    assert await call(slow, 0.0) == 3
    assert await call(slow, 0.0) == 3
