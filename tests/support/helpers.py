"""Test helpers: run one scenario as sync or async, plus custom backends and serializers.

The custom backend and serializers are importable by dotted path
(``tests.support.helpers.X``), so the tests can also select them through ``ConfigBase(...)``
fields and environment variables.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import functools
import inspect
import math
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import redis

import depcache

# --- running one scenario in sync or async mode ---------------------------------------------------


def cached(mode: str, **decorator_kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """Decorate a sync body with ``cache_with_deps``, as is or wrapped in an ``async def``.

    The async wrapper runs the body inside the coroutine, so ``add_dependency`` and friends see
    the async call's frame.
    """

    def decorate(body: Callable[..., Any]) -> Any:
        if mode == "sync":
            return depcache.cache_with_deps(**decorator_kwargs)(body)

        @functools.wraps(body)
        async def async_body(*args: Any, **kwargs: Any) -> Any:
            return body(*args, **kwargs)

        return depcache.cache_with_deps(**decorator_kwargs)(async_body)

    return decorate


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a sync or async function and return its result."""
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def op(
    manager: depcache.CacheManager, mode: str, name: str, *args: Any, **kwargs: Any
) -> Any:
    """Run manager method ``name`` (sync mode) or its async twin ``a<name>`` (async mode)."""
    if mode == "sync":
        return getattr(manager, name)(*args, **kwargs)
    return await getattr(manager, f"a{name}")(*args, **kwargs)


async def release_connections(manager: depcache.CacheManager) -> None:
    """Close a manager's connections, and make sure its Redis pools are disconnected.

    Disconnecting the pools too guards against ``close``/``aclose`` leaving pooled connections
    open (they would warn when collected, failing some later test under filterwarnings=error).
    """
    # clients that were never connected are left alone (reading a lazy `redis` would connect)
    async_client = _client_if_made(manager.async_backend)
    sync_client = _client_if_made(manager.backend)
    with contextlib.suppress(Exception):
        await manager.aclose()
    with contextlib.suppress(Exception):
        manager.close()
    pool = getattr(async_client, "connection_pool", None)
    if pool is not None:
        with contextlib.suppress(Exception):
            await pool.disconnect()
    pool = getattr(sync_client, "connection_pool", None)
    if pool is not None:
        with contextlib.suppress(Exception):
            pool.disconnect()


def _client_if_made(backend: object) -> object:
    try:
        return getattr(backend, "redis", None)
    except Exception:  # a lazily connected backend whose server is unreachable
        return None


def entry_keys(client: redis.Redis, prefix: str) -> list[bytes]:
    """The Redis keys of every entry a manager with ``prefix`` stored."""
    return sorted(client.scan_iter(match=f"{prefix}:k:*", count=1000))


def entry_key(prefix: str, key: str) -> str:
    """The Redis key of one entry (layout ``P:k:<key>``)."""
    return f"{prefix}:k:{key}"


class Calls:
    """A call counter that also remembers arguments."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def __call__(self, *args: Any) -> None:
        self.args.append(args)

    @property
    def count(self) -> int:
        return len(self.args)


# --- exact comparison -----------------------------------------------------------------------------


def _find_same(container: Iterable[Any], item: Any) -> Any:
    for candidate in container:
        if type(candidate) is type(item) and candidate == item:
            return candidate
    raise AssertionError(f"{item!r} ({type(item).__name__}) missing from {container!r}")


def assert_same(expected: Any, got: Any) -> None:  # noqa: PLR0912 - one branch per type
    """Assert ``got`` equals ``expected`` with the same types all the way down."""
    assert type(got) is type(expected), f"{got!r} is {type(got)}, expected {type(expected)}"
    if isinstance(expected, float):
        if math.isnan(expected):
            assert math.isnan(got)
        else:
            assert got == expected
            assert math.copysign(1.0, got) == math.copysign(1.0, expected)
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), f"{got!r} != {expected!r}"
        for exp_item, got_item in zip(expected, got, strict=True):
            assert_same(exp_item, got_item)
    elif isinstance(expected, dict):
        assert len(got) == len(expected), f"{got!r} != {expected!r}"
        for exp_key, exp_value in expected.items():
            got_key = _find_same(got, exp_key)
            assert_same(exp_key, got_key)
            assert_same(exp_value, got[got_key])
    elif isinstance(expected, (set, frozenset)):
        assert len(got) == len(expected), f"{got!r} != {expected!r}"
        for exp_item in expected:
            assert_same(exp_item, _find_same(got, exp_item))
    elif isinstance(expected, (datetime, time)):
        assert got == expected
        assert (got.tzinfo is None) == (expected.tzinfo is None)
        assert got.utcoffset() == expected.utcoffset()
        assert got.isoformat() == expected.isoformat()
    elif isinstance(expected, date):
        assert got == expected
    elif isinstance(expected, Decimal):
        assert str(got) == str(expected)
    else:
        assert got == expected, f"{got!r} != {expected!r}"


# --- a custom backend written like the seed README's MemoryBackend --------------------------------


class MemoryBackend(depcache.CacheBackend):
    """The seed README's example backend, completed with the remaining abstract methods."""

    instances: list[MemoryBackend] = []  # noqa: RUF012 - class-level registry for the tests

    def __init__(self, config: depcache.ConfigBase):
        super().__init__(config)
        self._cache: dict[str, Any] = {}
        self._dependencies: dict[str, set[str]] = {}
        self.set_calls = 0
        MemoryBackend.instances.append(self)

    def set(
        self,
        key: str,
        value: Any,
        ttl: int | None = None,
        dependencies: Iterable[str] | None = None,
    ) -> None:
        self.set_calls += 1
        cache_key = self._cache_key(key)
        self._cache[cache_key] = value
        for dep in dependencies or []:
            deps_key = self._deps_key(dep)
            if deps_key not in self._dependencies:
                self._dependencies[deps_key] = set()
            self._dependencies[deps_key].add(cache_key)

    def get(self, key: str) -> Any:
        return self._cache.get(self._cache_key(key))

    def delete(self, *keys: str) -> int:
        removed = 0
        for key in keys:
            if self._cache.pop(self._cache_key(key), None) is not None:
                removed += 1
        return removed

    def clear(self, pattern: str = "*") -> int:
        doomed = [k for k in self._cache if fnmatch.fnmatchcase(k, self._cache_key(pattern))]
        for k in doomed:
            del self._cache[k]
        return len(doomed)

    def invalidate_dependency(self, dependency: str) -> int:
        deps_key = self._deps_key(dependency)
        affected_keys = self._dependencies.get(deps_key, set())
        count = len(affected_keys)
        for cache_key in affected_keys:
            self._cache.pop(cache_key, None)
        self._dependencies[deps_key] = set()
        return count

    def exists(self, key: str) -> bool:
        return self._cache_key(key) in self._cache

    def ttl(self, key: str) -> int:
        return -1 if self.exists(key) else -2


class AsyncMemoryBackend(depcache.AsyncCacheBackend):
    """Async version of :class:`MemoryBackend`, delegating to one."""

    def __init__(self, config: depcache.ConfigBase):
        super().__init__(config)
        self.inner = MemoryBackend(config)

    async def set(
        self,
        key: str,
        value: Any,
        ttl: int | None = None,
        dependencies: Iterable[str] | None = None,
    ) -> None:
        self.inner.set(key, value, ttl, dependencies)

    async def get(self, key: str) -> Any:
        return self.inner.get(key)

    async def delete(self, *keys: str) -> int:
        return self.inner.delete(*keys)

    async def clear(self, pattern: str = "*") -> int:
        return self.inner.clear(pattern)

    async def invalidate_dependency(self, dependency: str) -> int:
        return self.inner.invalidate_dependency(dependency)

    async def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    async def ttl(self, key: str) -> int:
        return self.inner.ttl(key)


# --- custom serializers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """A value the default JSON serializer refuses but pickle handles."""

    x: int
    y: int


class PickleSerializer(depcache.BaseSerializer):
    """The seed README's custom serializer example, counting its uses."""

    dumps = 0
    loads = 0

    def dump(self, obj: Any) -> str:
        PickleSerializer.dumps += 1
        return base64.b64encode(pickle.dumps(obj)).decode("utf-8")

    def load(self, data: str | bytes) -> Any:
        PickleSerializer.loads += 1
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        return pickle.loads(base64.b64decode(data.encode("utf-8")))
