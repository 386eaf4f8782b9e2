"""The seed README's promises on values and keys, over memory and Redis, sync and async."""

from __future__ import annotations

import textwrap
import types
from typing import Any

import pytest

import depcache
from depcache import cache_with_deps, current_cache_key
from tests.support.helpers import Calls, cached, call


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
