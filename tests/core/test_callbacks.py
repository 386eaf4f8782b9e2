"""The seed README's promises on callbacks, over memory and Redis, sync and async."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import depcache
from depcache import cache_with_deps
from tests.support.helpers import Calls, cached, call


@pytest.mark.parametrize(
    ("mode", "callback_kind"), [("sync", "sync"), ("async", "sync"), ("async", "async")]
)
async def test_callback_arguments(
    manager: depcache.CacheManager, mode: str, callback_kind: str
) -> None:
    seen: list[dict[str, Any]] = []

    def sync_callback(**kwargs: Any) -> None:
        seen.append(kwargs)

    async def async_callback(**kwargs: Any) -> None:
        await asyncio.sleep(0)
        seen.append(kwargs)

    callback = sync_callback if callback_kind == "sync" else async_callback

    @cached(mode, cache_manager=manager, callback=callback)
    def f(x: int, *, scale: int) -> list[int]:
        return [x * scale]

    assert await call(f, 2, scale=3) == [6]
    assert await call(f, 2, scale=3) == [6]
    assert len(seen) == 2
    miss, hit = seen
    for record in seen:
        assert set(record) >= {"func", "cache_manager", "args", "kwargs", "is_hit", "cached_result"}
        assert record["cache_manager"] is manager
        assert tuple(record["args"]) == (2,)
        assert dict(record["kwargs"]) == {"scale": 3}
        assert getattr(record["func"], "__name__", None) == "f"
    assert miss["is_hit"] is False
    assert miss["cached_result"] is None
    assert hit["is_hit"] is True
    assert hit["cached_result"] == [6]


def test_async_callback_on_sync_function_warns_and_is_ignored(
    manager: depcache.CacheManager,
) -> None:
    called: list[Any] = []

    async def callback(**kwargs: Any) -> None:
        called.append(kwargs)

    with pytest.warns(UserWarning, match=r"(?i)async|coroutine|await"):

        @cache_with_deps(cache_manager=manager, callback=callback)
        def f() -> int:
            return 1

    assert f() == 1
    assert f() == 1
    assert called == []


@pytest.mark.parametrize(
    ("mode", "callback_kind"), [("sync", "sync"), ("async", "sync"), ("async", "async")]
)
async def test_callback_errors_do_not_break_calls(
    manager: depcache.CacheManager,
    mode: str,
    callback_kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    attempts = Calls()

    def sync_callback(**kwargs: Any) -> None:
        attempts(kwargs["is_hit"])
        raise RuntimeError("callback exploded")

    async def async_callback(**kwargs: Any) -> None:
        attempts(kwargs["is_hit"])
        raise RuntimeError("callback exploded")

    callback = sync_callback if callback_kind == "sync" else async_callback
    calls = Calls()

    @cached(mode, cache_manager=manager, callback=callback)
    def f() -> str:
        calls()
        return "ok"

    assert await call(f) == "ok"
    assert await call(f) == "ok"
    assert calls.count == 1
    assert attempts.args == [(False,), (True,)]
    assert any("callback exploded" in r.getMessage() or r.exc_info for r in caplog.records)
