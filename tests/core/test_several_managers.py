"""The seed README's promises on several managers, over memory and Redis, sync and async."""

from __future__ import annotations

from depcache import add_dependency, get_cache_manager
from tests.conftest import MakeManager
from tests.support.helpers import Calls, cached, call, op


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
