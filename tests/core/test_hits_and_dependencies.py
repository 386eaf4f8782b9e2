"""The seed README's promises on hit, miss and dependencies
(over memory and Redis, sync and async)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import depcache
from depcache import add_dependency, cache_with_deps, get_cache_manager
from tests.conftest import MakeManager
from tests.support.helpers import Calls, cached, call, op


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
