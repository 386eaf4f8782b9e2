"""The seed README's promises on custom serializers and backends
(over memory and Redis, sync and async)."""

from __future__ import annotations

import pytest

import depcache
from depcache import ConfigBase, add_dependency, cache_with_deps
from tests.conftest import MakeManager
from tests.support.helpers import (
    AsyncMemoryBackend,
    Calls,
    MemoryBackend,
    PickleSerializer,
    Point,
    cached,
    call,
)


@pytest.mark.parametrize("how", ["argument", "environment"])
async def test_custom_serializer_by_class_path(
    make_manager: MakeManager, mode: str, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    path = "tests.support.helpers.PickleSerializer"
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
    path = "tests.support.helpers.MemoryBackend"
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
    sync_path, async_path = (
        "tests.support.helpers.MemoryBackend",
        "tests.support.helpers.AsyncMemoryBackend",
    )
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
