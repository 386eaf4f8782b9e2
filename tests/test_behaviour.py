"""What the seed README promises, with its defects fixed, over memory and Redis, sync and async."""

from __future__ import annotations

import asyncio
import logging
import textwrap
import time
import types
from typing import Any

import pytest
import redis
import redis.asyncio

import depcache
from depcache import (
    CacheEventType,
    ConfigBase,
    StatsCollector,
    add_dependency,
    cache_with_deps,
    current_cache_key,
    get_cache_manager,
    set_cache_ttl,
)
from tests.conftest import MakeManager
from tests.helpers import (
    AsyncMemoryBackend,
    Calls,
    MemoryBackend,
    PickleSerializer,
    Point,
    cached,
    call,
    entry_keys,
    op,
)


class MyValueError(ValueError):
    """A subclass of a listed exception type, importable at module level."""


class CodeError(ValueError):
    """An exception whose constructor signature differs from its ``args``."""

    def __init__(self, code: int) -> None:
        super().__init__(f"failed with code {code}")
        self.code = code


# --- hit, miss and dependencies -------------------------------------------------------------------


async def test_hit_and_miss(manager: depcache.CacheManager, mode: str) -> None:
    calls = Calls()

    @cached(mode, cache_manager=manager)
    def double(x: int) -> int:
        calls(x)
        return x * 2

    assert await call(double, 1) == 2
    assert await call(double, 1) == 2
    assert calls.count == 1
    assert await call(double, 2) == 4
    assert await call(double, 2) == 4
    assert calls.args == [(1,), (2,)]


async def test_name_selects_registered_manager(manager: depcache.CacheManager, mode: str) -> None:
    seen: list[Any] = []

    @cached(mode, name=manager.name)
    def f() -> str:
        seen.append(get_cache_manager())
        return "v"

    assert await call(f) == "v"
    assert await call(f) == "v"
    assert seen == [manager]


async def test_static_dependencies(manager: depcache.CacheManager, mode: str) -> None:
    calls = Calls()

    @cached(mode, cache_manager=manager, dependencies=["static:a", "static:b"])
    def f(x: int) -> int:
        calls(x)
        return x

    await call(f, 1)
    await call(f, 2)
    assert await op(manager, mode, "invalidate_dependency", "unrelated") == 0
    await call(f, 1)
    assert calls.count == 2
    assert await op(manager, mode, "invalidate_dependency", "static:b") == 2
    await call(f, 1)
    await call(f, 2)
    assert calls.count == 4


async def test_add_dependency_and_invalidate(manager: depcache.CacheManager, mode: str) -> None:
    calls = Calls()

    @cached(mode, cache_manager=manager)
    def profile(user_id: int) -> dict[str, int]:
        calls(user_id)
        add_dependency(f"user:{user_id}")
        add_dependency("users")
        return {"id": user_id, "version": calls.count}

    assert await call(profile, 1) == {"id": 1, "version": 1}
    assert await call(profile, 2) == {"id": 2, "version": 2}
    assert await call(profile, 1) == {"id": 1, "version": 1}

    assert await op(manager, mode, "invalidate_dependency", "user:1") == 1
    assert await call(profile, 1) == {"id": 1, "version": 3}
    assert await call(profile, 2) == {"id": 2, "version": 2}  # still a hit

    assert await op(manager, mode, "invalidate_dependencies", "users", "nothing") == 2
    await call(profile, 1)
    await call(profile, 2)
    assert calls.count == 5


def _nested_pair(mode: str, manager: depcache.CacheManager, inner_calls: Calls, outer_calls: Calls):
    """An outer cached function calling an inner one that depends on ``item:<x>``."""
    if mode == "sync":

        @cache_with_deps(cache_manager=manager)
        def inner(x: int) -> int:
            inner_calls(x)
            add_dependency(f"item:{x}")
            return x * 10

        @cache_with_deps(cache_manager=manager)
        def outer(x: int) -> int:
            outer_calls(x)
            add_dependency(f"outer:{x}")
            return inner(x) + 1

        return inner, outer

    @cache_with_deps(cache_manager=manager)
    async def ainner(x: int) -> int:
        inner_calls(x)
        add_dependency(f"item:{x}")
        await asyncio.sleep(0)
        return x * 10

    @cache_with_deps(cache_manager=manager)
    async def aouter(x: int) -> int:
        outer_calls(x)
        add_dependency(f"outer:{x}")
        return await ainner(x) + 1

    return ainner, aouter


async def test_nested_collection_when_inner_is_a_miss(
    manager: depcache.CacheManager, mode: str
) -> None:
    inner_calls, outer_calls = Calls(), Calls()
    _inner, outer = _nested_pair(mode, manager, inner_calls, outer_calls)

    assert await call(outer, 1) == 11
    assert await call(outer, 1) == 11
    assert (outer_calls.count, inner_calls.count) == (1, 1)

    assert await op(manager, mode, "invalidate_dependency", "item:1") == 2
    assert await call(outer, 1) == 11
    assert (outer_calls.count, inner_calls.count) == (2, 2)


async def test_nested_collection_when_inner_is_a_hit(
    manager: depcache.CacheManager, mode: str
) -> None:
    inner_calls, outer_calls = Calls(), Calls()
    inner, outer = _nested_pair(mode, manager, inner_calls, outer_calls)

    assert await call(inner, 1) == 10  # cached before the outer call
    assert await call(outer, 1) == 11  # the inner call is a hit
    assert (outer_calls.count, inner_calls.count) == (1, 1)

    assert await op(manager, mode, "invalidate_dependency", "item:1") == 2
    assert await call(outer, 1) == 11
    assert (outer_calls.count, inner_calls.count) == (2, 2)


async def test_outer_dependencies_do_not_leak_into_inner(
    manager: depcache.CacheManager, mode: str
) -> None:
    inner_calls, outer_calls = Calls(), Calls()
    inner, outer = _nested_pair(mode, manager, inner_calls, outer_calls)

    await call(outer, 1)
    assert await op(manager, mode, "invalidate_dependency", "outer:1") == 1
    await call(outer, 1)
    await call(inner, 1)
    assert (outer_calls.count, inner_calls.count) == (2, 1)


async def test_static_dependencies_of_inner_hit_reach_outer(
    manager: depcache.CacheManager, mode: str
) -> None:
    outer_calls = Calls()

    @cached(mode, cache_manager=manager, dependencies=["static-inner"])
    def inner() -> int:
        return 1

    if mode == "sync":

        @cache_with_deps(cache_manager=manager)
        def outer() -> int:
            outer_calls()
            return inner() + 1

    else:

        @cache_with_deps(cache_manager=manager)
        async def outer() -> int:
            outer_calls()
            return await inner() + 1

    await call(inner)
    await call(outer)
    assert await op(manager, mode, "invalidate_dependency", "static-inner") == 2
    await call(outer)
    assert outer_calls.count == 2


@pytest.mark.parametrize("inner_first", [False, True], ids=["inner-miss", "inner-hit"])
async def test_sync_inner_call_in_async_outer_call(
    manager: depcache.CacheManager, inner_first: bool
) -> None:
    outer_calls = Calls()

    @cache_with_deps(cache_manager=manager)
    def inner(x: int) -> int:
        add_dependency(f"item:{x}")
        return x

    @cache_with_deps(cache_manager=manager)
    async def outer(x: int) -> int:
        outer_calls(x)
        await asyncio.sleep(0)
        return inner(x) + 1

    if inner_first:
        assert inner(1) == 1
    assert await outer(1) == 2
    assert await outer(1) == 2
    assert outer_calls.count == 1
    assert await manager.ainvalidate_dependency("item:1") == 2
    assert await outer(1) == 2
    assert outer_calls.count == 2


def _cross_manager_pair(
    mode: str,
    users: depcache.CacheManager,
    other: depcache.CacheManager,
    profile_calls: Calls,
    content_calls: Calls,
):
    """The README's get_user_profile (on ``users``) and get_user_content (on ``other``)."""
    if mode == "sync":

        @cache_with_deps(name=users.name)
        def profile(user_id: int) -> str:
            profile_calls(user_id)
            add_dependency(f"user:{user_id}")
            add_dependency(f"user_data_cache:{user_id}", manager=other.name)
            return f"profile{user_id}"

        @cache_with_deps(name=other.name)
        def content(user_id: int) -> dict[str, str]:
            content_calls(user_id)
            return {"profile": profile(user_id), "content": "c"}

        return profile, content

    @cache_with_deps(name=users.name)
    async def aprofile(user_id: int) -> str:
        profile_calls(user_id)
        add_dependency(f"user:{user_id}")
        add_dependency(f"user_data_cache:{user_id}", manager=other.name)
        return f"profile{user_id}"

    @cache_with_deps(name=other.name)
    async def acontent(user_id: int) -> dict[str, str]:
        content_calls(user_id)
        return {"profile": await aprofile(user_id), "content": "c"}

    return aprofile, acontent


@pytest.mark.parametrize("inner_first", [False, True], ids=["inner-miss", "inner-hit"])
async def test_cross_manager_add_dependency(
    make_manager: MakeManager, mode: str, inner_first: bool
) -> None:
    users, other = make_manager("users"), make_manager("other")
    profile_calls, content_calls = Calls(), Calls()
    profile, content = _cross_manager_pair(mode, users, other, profile_calls, content_calls)

    if inner_first:
        assert await call(profile, 1) == "profile1"
    assert await call(content, 1) == {"profile": "profile1", "content": "c"}
    assert await call(content, 1) == {"profile": "profile1", "content": "c"}
    assert (profile_calls.count, content_calls.count) == (1, 1)

    # The users manager does not know the other manager's dependency, and vice versa.
    assert await op(users, mode, "invalidate_dependency", "user_data_cache:1") == 0
    assert await op(other, mode, "invalidate_dependency", "user:1") == 0

    assert await op(other, mode, "invalidate_dependency", "user_data_cache:1") == 1
    await call(content, 1)
    assert (profile_calls.count, content_calls.count) == (1, 2)  # profile was a hit

    assert await op(users, mode, "invalidate_dependency", "user:1") == 1
    await call(profile, 1)
    assert (profile_calls.count, content_calls.count) == (2, 2)


# --- TTL ------------------------------------------------------------------------------------------


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


# --- values and keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 0, 0.0, "", False, [], {}, (), b""], ids=repr)
async def test_falsy_results_are_cached(
    manager: depcache.CacheManager, mode: str, value: Any
) -> None:
    calls = Calls()

    @cached(mode, cache_manager=manager)
    def f() -> Any:
        calls()
        return value

    first = await call(f)
    second = await call(f)
    assert calls.count == 1
    assert first == value
    assert second == value
    assert type(second) is type(value)


async def test_typed_arguments_are_distinct(manager: depcache.CacheManager, mode: str) -> None:
    calls = Calls()

    @cached(mode, cache_manager=manager)
    def kind(x: Any) -> str:
        calls(x)
        return type(x).__name__

    for _ in range(2):
        assert await call(kind, 1) == "int"
        assert await call(kind, "1") == "str"
        assert await call(kind, 1.0) == "float"
        assert await call(kind, True) == "bool"
        assert await call(kind, b"1") == "bytes"
    assert calls.count == 5


async def test_keyword_order_does_not_matter(manager: depcache.CacheManager, mode: str) -> None:
    calls = Calls()

    @cached(mode, cache_manager=manager)
    def f(a: int, b: int) -> int:
        calls(a, b)
        return a - b

    assert await call(f, a=1, b=2) == -1
    assert await call(f, b=2, a=1) == -1
    assert calls.count == 1
    assert await call(f, a=2, b=1) == 1
    assert calls.count == 2


def _module_with_fetch(
    module_name: str, mode: str, manager: depcache.CacheManager, calls: Calls
) -> types.ModuleType:
    module = types.ModuleType(module_name)
    module.__dict__.update(cache_with_deps=cache_with_deps, manager=manager, calls=calls)
    prefix = "" if mode == "sync" else "async "
    source = f"""
        @cache_with_deps(cache_manager=manager)
        {prefix}def fetch(x):
            calls(__name__)
            return __name__
    """
    exec(textwrap.dedent(source), module.__dict__)
    return module


async def test_same_name_in_different_modules_do_not_share(
    manager: depcache.CacheManager, mode: str
) -> None:
    calls = Calls()
    mod_a = _module_with_fetch("depcache_test_mod_a", mode, manager, calls)
    mod_b = _module_with_fetch("depcache_test_mod_b", mode, manager, calls)
    assert mod_a.fetch.__qualname__ == mod_b.fetch.__qualname__

    assert await call(mod_a.fetch, 1) == "depcache_test_mod_a"
    assert await call(mod_b.fetch, 1) == "depcache_test_mod_b"
    assert await call(mod_a.fetch, 1) == "depcache_test_mod_a"
    assert await call(mod_b.fetch, 1) == "depcache_test_mod_b"
    assert calls.args == [("depcache_test_mod_a",), ("depcache_test_mod_b",)]


async def test_cache_key_names_module_and_qualname(
    manager: depcache.CacheManager, mode: str
) -> None:
    keys: list[str | None] = []

    @cached(mode, cache_manager=manager)
    def f(x: int) -> int:
        keys.append(current_cache_key())
        return x

    await call(f, 1)
    await call(f, 2)
    assert len(keys) == 2
    k1, k2 = keys
    assert k1 is not None
    assert k2 is not None
    assert k1 != k2
    expected_head = f"{__name__}.{f.__qualname__}:"
    assert k1.startswith(expected_head)
    assert k2.startswith(expected_head)


class _WithDunder:
    def __init__(self, key: Any, noise: Any) -> None:
        self.key = key
        self._cache_key = noise
        self.pk = noise
        self.id = noise

    def __cache_key__(self) -> str:
        return f"User::{self.key}"


class _WithPrivateAttr:
    def __init__(self, key: Any, noise: Any) -> None:
        self._cache_key = f"priv::{key}"
        self.pk = noise
        self.id = noise


class _WithPk:
    def __init__(self, key: Any, noise: Any) -> None:
        self.pk = key
        self.id = noise


class _WithId:
    def __init__(self, key: Any, noise: Any) -> None:
        self.id = key
        self.noise = noise

    def __str__(self) -> str:
        return f"noise-{self.noise}"


class _WithStr:
    def __init__(self, key: Any, noise: Any) -> None:
        self.key = key
        self.noise = noise

    def __str__(self) -> str:
        return f"S{self.key}"


@pytest.mark.parametrize(
    "cls",
    [_WithDunder, _WithPrivateAttr, _WithPk, _WithId, _WithStr],
    ids=["__cache_key__", "_cache_key", "pk", "id", "str"],
)
async def test_argument_key_rules(
    manager: depcache.CacheManager, mode: str, cls: type[Any]
) -> None:
    calls = Calls()

    @cached(mode, cache_manager=manager)
    def f(obj: Any) -> int:
        calls(obj)
        return calls.count

    assert await call(f, cls(1, "x")) == 1
    assert await call(f, cls(1, "y")) == 1  # same logical key, lower-priority fields differ
    assert await call(f, cls(2, "x")) == 2
    assert await call(f, cls(2, "z")) == 2
    assert calls.count == 2


async def test_classes_as_arguments(manager: depcache.CacheManager, mode: str) -> None:
    calls = Calls()

    @cached(mode, cache_manager=manager)
    def f(cls: type[Any]) -> str:
        calls(cls)
        return cls.__name__

    for _ in range(2):
        assert await call(f, _WithDunder) == "_WithDunder"  # __cache_key__ is unbound here
        assert await call(f, _WithPk) == "_WithPk"
        assert await call(f, int) == "int"
    assert calls.count == 3


async def test_container_arguments(manager: depcache.CacheManager, mode: str) -> None:
    calls = Calls()

    @cached(mode, cache_manager=manager)
    def f(x: Any) -> str:
        calls(x)
        return type(x).__name__

    for _ in range(2):
        assert await call(f, [1, 2]) == "list"
        assert await call(f, (1, 2)) == "tuple"
        assert await call(f, {1, 2}) == "set"
        assert await call(f, frozenset({1, 2})) == "frozenset"
    assert calls.count == 4
    assert await call(f, {"a": 1, "b": [2]}) == "dict"
    assert await call(f, {"b": [2], "a": 1}) == "dict"  # same dict, other insertion order
    assert await call(f, {"a": 1, "b": (2,)}) == "dict"  # a tuple is not a list
    assert calls.count == 6


async def test_pk_key_includes_class_name(manager: depcache.CacheManager, mode: str) -> None:
    class Product:
        def __init__(self, pk: int) -> None:
            self.pk = pk

    class Order:
        def __init__(self, pk: int) -> None:
            self.pk = pk

    calls = Calls()

    @cached(mode, cache_manager=manager)
    def f(obj: Any) -> str:
        calls(obj)
        return type(obj).__name__

    assert await call(f, Product(1)) == "Product"
    assert await call(f, Order(1)) == "Order"
    assert await call(f, Product(1)) == "Product"
    assert calls.count == 2


# --- exceptions -----------------------------------------------------------------------------------


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


# --- callbacks ------------------------------------------------------------------------------------


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


# --- events and statistics ------------------------------------------------------------------------


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


# --- manual operations ----------------------------------------------------------------------------


async def test_manual_operations(manager: depcache.CacheManager, mode: str) -> None:
    assert await op(manager, mode, "get", "missing") is None
    assert await op(manager, mode, "get", "missing", default=5) == 5
    assert await op(manager, mode, "exists", "missing") is False
    assert await op(manager, mode, "ttl", "missing") == -2

    await op(manager, mode, "set", "key", {"a": (1, 2)}, ttl=100, dependencies={"dep1"})
    assert await op(manager, mode, "get", "key") == {"a": (1, 2)}
    assert await op(manager, mode, "exists", "key") is True
    assert 95 <= await op(manager, mode, "ttl", "key") <= 100

    await op(manager, mode, "set", "none", None)
    assert await op(manager, mode, "exists", "none") is True
    assert await op(manager, mode, "get", "none", default="default") is None
    assert await op(manager, mode, "ttl", "none") == -1

    assert await op(manager, mode, "invalidate_dependency", "dep1") == 1
    assert await op(manager, mode, "exists", "key") is False
    assert await op(manager, mode, "get", "key") is None

    await op(manager, mode, "set", "a", 1)
    await op(manager, mode, "set", "b", 2)
    assert await op(manager, mode, "delete", "a", "b", "c") == 2
    assert await op(manager, mode, "delete", "a") == 0

    await op(manager, mode, "set", "user:1", 1)
    await op(manager, mode, "set", "user:2", 2)
    await op(manager, mode, "set", "post:1", 3)
    assert await op(manager, mode, "clear", "user:*") == 2
    assert await op(manager, mode, "get", "post:1") == 3
    assert await op(manager, mode, "clear") == 2  # "none" and "post:1"
    assert await op(manager, mode, "exists", "post:1") is False


def test_manager_attributes(manager: depcache.CacheManager, prefix: str) -> None:
    assert manager.name == prefix
    assert manager.prefix == prefix
    assert manager.config.prefix == prefix
    assert manager.enabled is True
    assert depcache.get_or_create_cache_manager(name=prefix) is manager


def test_direct_constructor_does_not_register(prefix: str) -> None:
    config = ConfigBase(prefix=prefix)
    direct = depcache.CacheManager(
        config=config, name=prefix, backend=depcache.FakeCacheBackend(config)
    )
    direct.set("k", 1)
    assert direct.get("k") == 1
    assert prefix not in depcache.registered_managers()
    registered = depcache.get_or_create_cache_manager(
        name=prefix, config=config, backend=depcache.FakeCacheBackend(config)
    )
    assert registered is not direct
    assert depcache.get_or_create_cache_manager(name=prefix) is registered


@pytest.mark.redis
async def test_sync_and_async_share_one_redis_store(redis_manager: depcache.CacheManager) -> None:
    calls = Calls()

    @cache_with_deps(cache_manager=redis_manager, dependencies=["shared"])
    def sync_f() -> str:
        calls("sync")
        return "s"

    @cache_with_deps(cache_manager=redis_manager, dependencies=["shared"])
    async def async_f() -> str:
        calls("async")
        return "a"

    redis_manager.set("k", [1])
    assert await redis_manager.aget("k") == [1]
    assert sync_f() == "s"
    assert await async_f() == "a"
    assert redis_manager.invalidate_dependency("shared") == 2
    assert await async_f() == "a"
    assert sync_f() == "s"
    assert await redis_manager.ainvalidate_dependency("shared") == 2
    assert calls.count == 4


# --- several managers -----------------------------------------------------------------------------


async def test_managers_are_isolated(make_manager: MakeManager, mode: str) -> None:
    m1, m2 = make_manager("one"), make_manager("two")
    calls = Calls()

    def body(x: int) -> str:
        calls(get_cache_manager())
        add_dependency("d")
        manager = get_cache_manager()
        assert manager is not None
        return f"{manager.name}:{x}"

    f1 = cached(mode, cache_manager=m1)(body)
    f2 = cached(mode, cache_manager=m2)(body)

    assert await call(f1, 1) == f"{m1.name}:1"
    assert await call(f2, 1) == f"{m2.name}:1"
    assert calls.args == [(m1,), (m2,)]

    assert await op(m1, mode, "invalidate_dependency", "d") == 1
    assert await call(f2, 1) == f"{m2.name}:1"
    assert calls.count == 2
    assert await call(f1, 1) == f"{m1.name}:1"
    assert calls.count == 3

    await op(m1, mode, "set", "k", "one")
    await op(m2, mode, "set", "k", "two")
    assert await op(m1, mode, "get", "k") == "one"
    assert await op(m2, mode, "get", "k") == "two"
    await op(m1, mode, "clear")
    assert await op(m1, mode, "exists", "k") is False
    assert await op(m2, mode, "get", "k") == "two"
    await call(f2, 1)
    assert calls.count == 3


# --- context helpers ------------------------------------------------------------------------------


def test_context_helpers_outside_a_cached_call() -> None:
    add_dependency("nothing")
    set_cache_ttl(10)
    assert current_cache_key() is None
    assert get_cache_manager() is None


async def test_context_helpers_inside_a_cached_call(
    manager: depcache.CacheManager, mode: str
) -> None:
    seen: list[Any] = []

    @cached(mode, cache_manager=manager)
    def f() -> int:
        seen.append((current_cache_key(), get_cache_manager()))
        return 1

    await call(f)
    assert len(seen) == 1
    key, seen_manager = seen[0]
    assert isinstance(key, str)
    assert seen_manager is manager
    assert current_cache_key() is None
    assert get_cache_manager() is None


def test_wrapper_metadata(manager: depcache.CacheManager) -> None:
    def original(x: int) -> int:
        """Docstring."""
        return x

    wrapped = cache_with_deps(cache_manager=manager)(original)
    assert wrapped.__wrapped__ is original
    assert wrapped.__name__ == "original"
    assert wrapped.__doc__ == "Docstring."
    assert depcache.async_cache_with_deps is not None


async def test_async_cache_with_deps_alias(manager: depcache.CacheManager) -> None:
    calls = Calls()

    @depcache.async_cache_with_deps(cache_manager=manager)
    async def f() -> int:
        calls()
        return 1

    assert await f() == 1
    assert await f() == 1
    assert calls.count == 1


def test_default_manager_from_environment(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("DEP_CACHE_BACKEND", "memory")
    monkeypatch.setenv("DEP_CACHE_PREFIX", prefix)
    calls = Calls()
    managers: list[Any] = []

    @cache_with_deps()
    def f() -> int:
        calls()
        managers.append(get_cache_manager())
        return 1

    assert f() == 1
    assert f() == 1
    assert calls.count == 1
    assert managers[0].prefix == prefix
    assert managers[0].name == prefix


@pytest.mark.redis
def test_default_redis_manager_from_environment(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    monkeypatch.delenv("DEP_CACHE_BACKEND", raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DEP_CACHE_PREFIX", prefix)
    manager = depcache.get_or_create_cache_manager()
    assert manager.name == prefix
    calls = Calls()
    managers: list[Any] = []

    @cache_with_deps()
    def f() -> int:
        calls()
        managers.append(get_cache_manager())
        return 1

    assert f() == 1
    assert f() == 1
    assert calls.count == 1
    assert managers == [manager]
    assert len(entry_keys(redis_client, prefix)) == 1


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["false", "0", "no"])
async def test_disabled_cache_calls_through(
    make_manager: MakeManager, mode: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("DEP_CACHE_ENABLED", value)
    manager = make_manager("off")
    assert manager.enabled is False
    calls = Calls()

    @cached(mode, cache_manager=manager, dependencies=["d"])
    def f(x: int) -> int:
        calls(x)
        add_dependency("e")
        return x

    for _ in range(3):
        assert await call(f, 1) == 1
    assert calls.count == 3
    await op(manager, mode, "set", "k", 1)
    assert await op(manager, mode, "get", "k", default="default") == "default"


def test_disabled_by_argument(prefix: str) -> None:
    config = ConfigBase(prefix=prefix, cache_enabled=False)
    manager = depcache.get_or_create_cache_manager(
        name=prefix, config=config, backend=depcache.FakeCacheBackend(config)
    )
    calls = Calls()

    @cache_with_deps(cache_manager=manager)
    def f() -> int:
        calls()
        return 1

    f()
    f()
    assert calls.count == 2


def test_config_reads_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEP_CACHE_PREFIX", "first")
    config = ConfigBase()
    monkeypatch.setenv("DEP_CACHE_PREFIX", "second")
    assert config.prefix == "first"
    assert ConfigBase().prefix == "second"
    assert ConfigBase(prefix="explicit").prefix == "explicit"


@pytest.mark.parametrize("bad_prefix", ["a{b", "a}b", "{x}"])
def test_prefix_with_braces_is_rejected(bad_prefix: str) -> None:
    with pytest.raises(depcache.ConfigError):
        ConfigBase(prefix=bad_prefix)
    with pytest.raises(ValueError, match=r"[{}]|prefix"):
        ConfigBase(prefix=bad_prefix)


@pytest.mark.parametrize(
    ("config_class", "variable", "value"),
    [
        (ConfigBase, "DEP_CACHE_ENABLED", "maybe"),
        (ConfigBase, "DEP_CACHE_GUARD_SECONDS", "soon"),
        (depcache.RedisConfig, "REDIS_PORT", "six"),
        (depcache.RedisConfig, "REDIS_DB", "zero"),
        (depcache.RedisConfig, "REDIS_SSL", "perhaps"),
        (depcache.RedisConfig, "REDIS_SOCKET_TIMEOUT", "slow"),
        (depcache.RedisConfig, "REDIS_MAX_CONNECTIONS", "many"),
    ],
)
def test_bad_environment_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, config_class: type[Any], variable: str, value: str
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv(variable, value)
    with pytest.raises(depcache.ConfigError, match=variable):
        config_class()


def test_error_hierarchy() -> None:
    assert issubclass(depcache.ConfigError, depcache.DepCacheError)
    assert issubclass(depcache.ConfigError, ValueError)
    assert issubclass(depcache.BackendError, depcache.DepCacheError)
    assert issubclass(depcache.SerializationError, depcache.DepCacheError)
    assert issubclass(depcache.SerializationError, TypeError)
    assert issubclass(depcache.InvalidationError, depcache.DepCacheError)


# --- custom serializers and backends --------------------------------------------------------------


@pytest.mark.parametrize("how", ["argument", "environment"])
async def test_custom_serializer_by_class_path(
    make_manager: MakeManager, mode: str, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    path = "tests.helpers.PickleSerializer"
    if how == "environment":
        monkeypatch.setenv("DEP_CACHE_SERIALIZER", path)
        manager = make_manager("ser")
    else:
        manager = make_manager("ser", serializer_class=path)
    dumps_before, loads_before = PickleSerializer.dumps, PickleSerializer.loads
    calls = Calls()

    @cached(mode, cache_manager=manager)
    def f(x: int) -> Point:
        calls(x)
        return Point(x, -x)  # the default JSON serializer refuses this

    assert await call(f, 3) == Point(3, -3)
    assert await call(f, 3) == Point(3, -3)
    assert calls.count == 1
    assert PickleSerializer.dumps > dumps_before
    assert PickleSerializer.loads > loads_before


def test_custom_backend_object(prefix: str) -> None:
    config = ConfigBase(prefix=prefix)
    backend = MemoryBackend(config)
    manager = depcache.get_or_create_cache_manager(name=prefix, config=config, backend=backend)
    calls = Calls()

    @cache_with_deps(name=prefix)
    def f(x: int) -> tuple[int, str]:
        calls(x)
        add_dependency(f"x:{x}")
        return (x, "v")

    assert f(1) == (1, "v")
    assert f(1) == (1, "v")
    assert f(2) == (2, "v")
    assert calls.count == 2
    assert backend.set_calls == 2
    assert all(isinstance(v, (bytes, str)) for v in backend._cache.values())

    assert manager.invalidate_dependency("x:1") == 1
    assert f(1) == (1, "v")
    assert f(2) == (2, "v")
    assert calls.count == 3

    manager.set("k", {"a": 1})
    assert manager.get("k") == {"a": 1}
    assert manager.exists("k") is True
    assert manager.delete("k") == 1


async def test_custom_async_backend_object(prefix: str) -> None:
    config = ConfigBase(prefix=prefix)
    async_backend = AsyncMemoryBackend(config)
    manager = depcache.get_or_create_cache_manager(
        name=prefix, config=config, backend=MemoryBackend(config), async_backend=async_backend
    )
    calls = Calls()

    @cache_with_deps(cache_manager=manager)
    async def f(x: int) -> int:
        calls(x)
        add_dependency(f"x:{x}")
        return x

    assert await f(1) == 1
    assert await f(1) == 1
    assert calls.count == 1
    assert async_backend.inner.set_calls == 1
    assert await manager.ainvalidate_dependency("x:1") == 1
    assert await f(1) == 1
    assert calls.count == 2


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_custom_backend_by_class_path(
    monkeypatch: pytest.MonkeyPatch, prefix: str, how: str
) -> None:
    path = "tests.helpers.MemoryBackend"
    if how == "environment":
        monkeypatch.setenv("DEP_CACHE_BACKEND_CLASS", path)
        config = ConfigBase(prefix=prefix)
    else:
        config = ConfigBase(prefix=prefix, cache_backend_class=path)
    before = len(MemoryBackend.instances)
    manager = depcache.get_or_create_cache_manager(name=prefix, config=config)
    calls = Calls()

    @cache_with_deps(cache_manager=manager)
    def f() -> str:
        calls()
        add_dependency("d")
        return "v"

    assert f() == "v"
    assert f() == "v"
    assert calls.count == 1
    created = MemoryBackend.instances[before:]
    assert len(created) == 1
    assert created[0].set_calls == 1
    assert manager.invalidate_dependency("d") == 1


@pytest.mark.parametrize("how", ["argument", "environment"])
async def test_custom_async_backend_by_class_path(
    monkeypatch: pytest.MonkeyPatch, prefix: str, how: str
) -> None:
    sync_path, async_path = "tests.helpers.MemoryBackend", "tests.helpers.AsyncMemoryBackend"
    if how == "environment":
        monkeypatch.setenv("DEP_CACHE_BACKEND_CLASS", sync_path)
        monkeypatch.setenv("DEP_CACHE_ASYNC_BACKEND_CLASS", async_path)
        config = ConfigBase(prefix=prefix)
    else:
        config = ConfigBase(
            prefix=prefix, cache_backend_class=sync_path, async_cache_backend_class=async_path
        )
    manager = depcache.get_or_create_cache_manager(name=prefix, config=config)
    assert isinstance(manager.async_backend, AsyncMemoryBackend)
    calls = Calls()

    @cache_with_deps(cache_manager=manager)
    async def f() -> str:
        calls()
        add_dependency("d")
        return "v"

    assert await f() == "v"
    assert await f() == "v"
    assert calls.count == 1
    assert manager.async_backend.inner.set_calls == 1
    assert await manager.ainvalidate_dependency("d") == 1


# --- invalidation across managers -----------------------------------------------------------------


async def _invalidate_everywhere(mode: str, *deps: str, **kwargs: Any) -> Any:
    if mode == "sync":
        return depcache.invalidate(*deps, **kwargs)
    return await depcache.ainvalidate(*deps, **kwargs)


async def test_invalidate_across_managers(make_manager: MakeManager, mode: str) -> None:
    m1, m2, m3 = make_manager("one"), make_manager("two"), make_manager("three")
    calls = Calls()

    def body(x: int) -> int:
        calls(x)
        add_dependency("shared")
        return x

    f1 = cached(mode, cache_manager=m1)(body)
    f2 = cached(mode, cache_manager=m2)(body)
    for fn, x in ((f1, 1), (f1, 2), (f2, 1)):
        await call(fn, x)
    assert calls.count == 3

    report = await _invalidate_everywhere(mode, "shared", "other")
    assert report.ok
    assert report.errors == {}
    assert report.removed == {m1.name: 2, m2.name: 1, m3.name: 0}
    assert report.total == 3

    for fn, x in ((f1, 1), (f1, 2), (f2, 1)):
        await call(fn, x)
    assert calls.count == 6


async def test_invalidate_named_managers_only(make_manager: MakeManager, mode: str) -> None:
    m1, m2 = make_manager("one"), make_manager("two")
    calls = Calls()

    def body() -> int:
        calls()
        add_dependency("shared")
        return 1

    f1 = cached(mode, cache_manager=m1)(body)
    f2 = cached(mode, cache_manager=m2)(body)
    await call(f1)
    await call(f2)
    report = await _invalidate_everywhere(mode, "shared", managers=[m2.name])
    assert report.removed == {m2.name: 1}
    await call(f1)
    await call(f2)
    assert calls.count == 3


@pytest.mark.redis
async def test_invalidate_reports_failures_after_trying_all(
    redis_manager: depcache.CacheManager, prefix: str, mode: str
) -> None:
    bad_name = f"{prefix}bad"
    depcache.get_or_create_cache_manager(
        name=bad_name,
        config=depcache.RedisConfig(url="redis://127.0.0.1:1/0", prefix=bad_name),
    )
    calls = Calls()

    @cached(mode, cache_manager=redis_manager, dependencies=["shared"])
    def f() -> int:
        calls()
        return 1

    await call(f)
    with pytest.raises(depcache.InvalidationError) as excinfo:
        await _invalidate_everywhere(mode, "shared")
    report = excinfo.value.report
    assert not report.ok
    assert report.removed.get(redis_manager.name) == 1
    assert set(report.errors) == {bad_name}
    assert isinstance(report.errors[bad_name], depcache.BackendError)
    await call(f)
    assert calls.count == 2


@pytest.mark.redis
def test_redis_entry_layout(
    redis_manager: depcache.CacheManager, redis_client: redis.Redis, prefix: str
) -> None:
    keys: list[str | None] = []

    @cache_with_deps(cache_manager=redis_manager, ttl=100)
    def f() -> int:
        keys.append(current_cache_key())
        add_dependency("layout")
        return 1

    f()
    assert entry_keys(redis_client, prefix) == [f"{prefix}:k:{keys[0]}".encode()]
    index = f"{prefix}:d:{{layout}}:i"
    assert redis_client.type(index) == b"zset"
    # the entry, and the dependency's marker: member '' scored minus the epoch it was last
    # invalidated at (or first used)
    assert redis_client.zrange(index, 0, -1) == [b"", keys[0].encode()]  # named without prefix
    assert redis_client.zscore(index, "") < 0
    assert redis_client.ttl(index) > 0  # the index lives as long as its longest entry
    assert redis_manager.invalidate_dependency("layout") == 1
    assert entry_keys(redis_client, prefix) == []
    assert redis_client.zrange(index, 0, -1) == [b""]  # only the marker is left
    assert -redis_client.zscore(index, "") == int(redis_client.get(f"{prefix}:epoch"))


@pytest.mark.redis
def test_dependency_index_lives_as_long_as_its_entries(
    redis_manager: depcache.CacheManager, redis_client: redis.Redis, prefix: str
) -> None:
    index = f"{prefix}:d:{{d}}:i"
    redis_manager.set("short", 1, ttl=100, dependencies={"d"})
    assert 95 <= redis_client.ttl(index) <= 100
    redis_manager.set("long", 1, ttl=300, dependencies={"d"})
    assert 295 <= redis_client.ttl(index) <= 300
    redis_manager.set("shorter", 1, ttl=50, dependencies={"d"})
    assert 295 <= redis_client.ttl(index) <= 300  # never dies before its longest-lived entry
    redis_manager.set("forever", 1, dependencies={"d"})
    assert redis_client.ttl(index) == -1
    assert redis_client.zcard(index) == 5  # four entries and the marker

    pruned = f"{prefix}:d:{{e}}:i"
    redis_manager.set("blink", 1, ttl=0.2, dependencies={"e"})
    time.sleep(0.3)
    swept = [b"", b"next"]  # an index names entries without the prefix
    for _ in range(100):  # about one store in four sweeps an index
        redis_manager.set("next", 1, ttl=100, dependencies={"e"})
        if redis_client.zrange(pruned, 0, -1) == swept:
            break
    assert redis_client.zrange(pruned, 0, -1) == swept  # the expired member was dropped

    assert redis_manager.invalidate_dependency("d") == 4
    # the marker outlives the entries by the guard window
    assert redis_client.zrange(index, 0, -1) == [b""]
    assert 0 < redis_client.pttl(index) <= 600_000
    assert redis_client.exists(f"{prefix}:epoch") == 1


@pytest.mark.redis
async def test_redis_round_trips(
    redis_manager: depcache.CacheManager, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a round trip is one write of commands to a connection (the hit path writes its one
    # command to a pooled connection itself, past execute_command)
    connection_class: Any = (
        redis.connection.Connection if mode == "sync" else redis.asyncio.connection.Connection
    )
    original = connection_class.send_packed_command
    commands: list[str] = []

    def counting(self: Any, command: Any, *args: Any, **options: Any) -> Any:
        commands.append(repr(command)[:60])
        return original(self, command, *args, **options)

    async def acounting(self: Any, command: Any, *args: Any, **options: Any) -> Any:
        commands.append(repr(command)[:60])
        return await original(self, command, *args, **options)

    @cached(mode, cache_manager=redis_manager)
    def f(x: int) -> int:
        for i in range(5):
            add_dependency(f"dep{i}")
        add_dependency("all")
        return x

    await call(f, 0)  # loads the store script
    await op(redis_manager, mode, "invalidate_dependency", "warm-up")  # and the invalidate one
    for x in range(1, 100):
        await call(f, x)
    monkeypatch.setattr(
        connection_class, "send_packed_command", counting if mode == "sync" else acounting
    )

    commands.clear()
    await call(f, 1000)
    assert len(commands) == 2, commands  # miss + store, whatever the number of dependencies
    commands.clear()
    await call(f, 1000)
    assert len(commands) == 1, commands  # hit
    commands.clear()
    assert await op(redis_manager, mode, "invalidate_dependency", "all") == 101
    assert len(commands) == 1, commands  # invalidation, whatever the number of entries
