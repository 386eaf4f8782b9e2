"""The seed README's promises on exceptions, over memory and Redis, sync and async."""

from __future__ import annotations

import pytest

import depcache
from depcache import add_dependency
from tests.support.helpers import Calls, cached, call, op


class MyValueError(ValueError):
    """A subclass of a listed exception type, importable at module level."""


class CodeError(ValueError):
    """An exception whose constructor signature differs from its ``args``."""

    def __init__(self, code: int) -> None:
        super().__init__(f"failed with code {code}")
        self.code = code


@pytest.mark.parametrize("exc_type", [ValueError, MyValueError])
async def test_listed_exceptions_are_cached(
    manager: depcache.CacheManager, mode: str, exc_type: type[Exception]
) -> None:
    calls = Calls()

    @cached(mode, cache_manager=manager, cache_exception_types=[ValueError, KeyError])
    def f(x: int) -> int:
        calls(x)
        add_dependency(f"x:{x}")
        raise exc_type("bad input", x)

    with pytest.raises(exc_type) as first:
        await call(f, 7)
    with pytest.raises(exc_type) as second:
        await call(f, 7)
    assert calls.count == 1
    assert type(second.value) is exc_type
    assert second.value.args == ("bad input", 7)
    assert str(second.value) == str(first.value)

    # Cached exceptions follow the dependency rules.
    assert await op(manager, mode, "invalidate_dependency", "x:7") == 1
    with pytest.raises(exc_type):
        await call(f, 7)
    assert calls.count == 2


async def test_cached_exception_with_custom_constructor(
    manager: depcache.CacheManager, mode: str
) -> None:
    calls = Calls()

    @cached(mode, cache_manager=manager, cache_exception_types=[ValueError])
    def f() -> int:
        calls()
        raise CodeError(42)

    with pytest.raises(CodeError) as first:
        await call(f)
    with pytest.raises(CodeError) as second:
        await call(f)
    assert calls.count == 1
    assert type(second.value) is CodeError
    assert second.value.args == first.value.args == ("failed with code 42",)
    assert str(second.value) == "failed with code 42"


@pytest.mark.parametrize(
    "listed", [None, [], [KeyError], [MyValueError]], ids=["None", "empty", "other", "subclass"]
)
async def test_unlisted_exceptions_are_not_cached(
    manager: depcache.CacheManager, mode: str, listed: list[type[Exception]] | None
) -> None:
    calls = Calls()

    @cached(mode, cache_manager=manager, cache_exception_types=listed)
    def f() -> int:
        calls()
        raise ValueError("not cached")

    for _ in range(2):
        with pytest.raises(ValueError, match="not cached"):
            await call(f)
    assert calls.count == 2
