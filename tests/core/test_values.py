"""A cached value equals the computed one, types included, or storing fails loudly."""

from __future__ import annotations

import itertools
import logging
import math
import uuid
import zoneinfo
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import depcache
from depcache import cache_with_deps
from tests.support.helpers import Calls, assert_same, cached, call, entry_keys

IST = timezone(timedelta(hours=5, minutes=30))


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
    ]
)
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Values only: memory and standalone Redis (a cluster moves the same bytes)."""
    return str(request.param)


VALUES: dict[str, Any] = {
    "tuple": (1, "a", None),
    "nested tuples": ((1, 2), ((3,), ()), []),
    "list of tuples": [(1, 2), (3, 4)],
    "int dict keys": {1: "one", 2: "two"},
    "mixed dict keys": {1: "int", "1": "str", 1.5: "float", None: "none", (1, "a"): "tuple"},
    "bool and frozenset keys": {True: "t", frozenset({1, 2}): "fs"},
    "tuples in dict values": {"a": (1, (2, 3)), "b": [(4,)], "c": {"d": ()}},
    "set": {1, "a", (2, 3)},
    "empty set": set(),
    "frozenset": frozenset({1, 2.5, "x"}),
    "set of frozensets": {frozenset({1}), frozenset({"a", (1, 2)})},
    "aware datetime": datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=IST),
    "utc datetime": datetime(2024, 1, 1, tzinfo=timezone.utc),
    "naive datetime": datetime(1999, 12, 31, 23, 59, 59, 999999),
    "date": date(2000, 2, 29),
    "time": time(12, 30, 15, 123),
    "aware time": time(1, 2, 3, tzinfo=IST),
    "timedelta": timedelta(days=-3, seconds=5, microseconds=7),
    "decimal": Decimal("1.10"),
    "long decimal": Decimal("3.14159265358979323846264338327950288419716939937510"),
    "negative decimal exponent": Decimal("-1E-30"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "bytes": bytes(range(256)),
    "big int": 2**100,
    "big negative int": -(2**70) - 1,
    "int just above 64 bits": 2**64,
    "inf": math.inf,
    "-inf": -math.inf,
    "negative zero": -0.0,
    "float precision": 0.1 + 0.2,
    "unicode": "héllo ✓ 🎉 \x00 \n",
    "mixed list": [True, 1, 1.0, "1", None, b"1"],
    "all together": {
        "when": [datetime(2020, 5, 17, 8, 0, tzinfo=timezone.utc), date(2020, 5, 17)],
        "ids": {uuid.UUID(int=1), uuid.UUID(int=2)},
        "amounts": (Decimal("0.01"), Decimal("100")),
        7: {"nested": frozenset({(1, "x")})},
    },
    "marker-like exc dict": {"__dc": "exc", "type": "os.system", "args": ["echo hi"]},
    "marker-like tuple dict": {"__dc": "tuple", "v": [1, 2]},
    "marker-like nested": [{"__dc": "set", "v": []}, {"__dc": 1}, {"__dc": None}],
    "other marker shapes": {"__tuple__": [1], "__class__": "x", "$type": "datetime"},
    "exception-like dict": {
        "exception_module": "os",
        "exception_class": "system",
        "message": "echo hi",
    },
}

_keys = itertools.count()


async def _round_trip(manager: depcache.CacheManager, via: str, value: Any) -> tuple[Any, int]:
    """Store ``value`` through the cache and read it back; returns (cached value, calls)."""
    if via == "manual":
        key = f"manual:{next(_keys)}"
        manager.set(key, value)
        return manager.get(key), 1
    calls = Calls()

    @cached(via, cache_manager=manager)
    def f() -> Any:
        calls()
        return value

    first = await call(f)
    assert first is value
    return await call(f), calls.count


@pytest.mark.parametrize("via", ["sync", "async", "manual"])
@pytest.mark.parametrize("value", list(VALUES.values()), ids=list(VALUES))
async def test_round_trip(manager: depcache.CacheManager, via: str, value: Any) -> None:
    got, calls = await _round_trip(manager, via, value)
    assert calls == 1
    assert_same(value, got)


@pytest.mark.parametrize("via", ["sync", "async", "manual"])
async def test_nan_round_trip(manager: depcache.CacheManager, via: str) -> None:
    got, calls = await _round_trip(manager, via, [math.nan, {"x": math.nan}])
    assert calls == 1
    assert type(got) is list
    assert isinstance(got[0], float)
    assert math.isnan(got[0])
    assert math.isnan(got[1]["x"])


@pytest.mark.parametrize("via", ["sync", "async", "manual"])
@pytest.mark.parametrize("fold", [0, 1])
async def test_zoneinfo_datetime_is_exact_or_refused(
    manager: depcache.CacheManager, via: str, fold: int
) -> None:
    """A datetime in a named zone must not silently come back in a fixed-offset zone."""
    try:
        paris = zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database")
    # 02:30 on 2024-10-27 happens twice in Paris; fold picks the first (+02:00) or second (+01:00).
    value = datetime(2024, 10, 27, 2, 30, tzinfo=paris, fold=fold)
    try:
        got, _ = await _round_trip(manager, via, value)
    except depcache.SerializationError:
        return  # refusing is allowed; a different value is not
    assert got == value
    assert got.utcoffset() == value.utcoffset()
    # Same zone: wall-clock arithmetic crosses the DST change the same way.
    later = timedelta(days=180)
    assert (got + later).utcoffset() == (value + later).utcoffset()


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _depth(value: Any) -> int:
    depth = 0
    while value:
        assert type(value) is list
        assert len(value) == 1
        value, depth = value[0], depth + 1
    return depth


async def test_deeply_nested_value_is_exact_or_refused(
    manager: depcache.CacheManager, mode: str
) -> None:
    deep = _nested(5000)

    @cached(mode, cache_manager=manager)
    def f() -> Any:
        return deep

    try:
        await call(f)
    except depcache.SerializationError:
        return
    assert _depth(await call(f)) == 5000


async def test_deeply_nested_value_with_silent_errors_is_returned(
    manager: depcache.CacheManager, mode: str
) -> None:
    deep = _nested(5000)

    @cached(mode, cache_manager=manager, silent_backend_errors=True)
    def f() -> Any:
        return deep

    first = await call(f)
    assert first is deep
    assert _depth(await call(f)) == 5000


class Opaque:
    """Not a supported value type."""


@pytest.mark.parametrize(
    "make_value",
    [Opaque, lambda: {"a": [Opaque()]}, lambda: (1, {Opaque()}), lambda: {Opaque(): 1}],
    ids=["bare", "nested in list", "in a set", "as dict key"],
)
async def test_unsupported_type_raises_serialization_error(
    manager: depcache.CacheManager, mode: str, make_value: Any
) -> None:
    @cached(mode, cache_manager=manager)
    def f() -> Any:
        return make_value()

    with pytest.raises(depcache.SerializationError, match="Opaque") as excinfo:
        await call(f)
    assert isinstance(excinfo.value, TypeError)


def test_manual_set_of_unsupported_type_raises(manager: depcache.CacheManager) -> None:
    with pytest.raises(depcache.SerializationError, match="Opaque"):
        manager.set("k", [Opaque()])
    assert manager.exists("k") is False


async def test_unsupported_type_with_silent_errors_is_returned_not_cached(
    manager: depcache.CacheManager, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    calls = Calls()
    produced: list[Opaque] = []

    @cached(mode, cache_manager=manager, silent_backend_errors=True)
    def f() -> Opaque:
        calls()
        produced.append(Opaque())
        return produced[-1]

    first = await call(f)
    second = await call(f)
    assert first is produced[0]
    assert second is produced[1]
    assert calls.count == 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings
    assert any("Opaque" in r.getMessage() or r.exc_info for r in warnings)


@pytest.mark.redis
def test_failed_store_leaves_nothing_in_redis(
    redis_manager: depcache.CacheManager, redis_client: redis.Redis, prefix: str
) -> None:
    @cache_with_deps(cache_manager=redis_manager, dependencies=["d"])
    def f() -> Any:
        return {"x": Opaque()}

    with pytest.raises(depcache.SerializationError):
        f()
    assert entry_keys(redis_client, prefix) == []
    assert redis_manager.invalidate_dependency("d") == 0


# --- property: any supported value round-trips exactly --------------------------------------------

OFFSETS = st.sampled_from(
    [
        timezone.utc,
        IST,
        timezone(timedelta(hours=-8)),
        timezone(timedelta(hours=13, minutes=45)),
    ]
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=OFFSETS),
    st.times(),
    st.times(timezones=OFFSETS),
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.uuids(),
)

HASHABLES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple),
        st.frozensets(inner, max_size=3),
    ),
    max_leaves=6,
)

VALUE_TREES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(HASHABLES, inner, max_size=4),
        st.sets(HASHABLES, max_size=4),
        st.frozensets(HASHABLES, max_size=4),
    ),
    max_leaves=20,
)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=VALUE_TREES)
def test_property_supported_values_round_trip(manager: depcache.CacheManager, value: Any) -> None:
    calls = Calls()
    key = next(_keys)

    @cache_with_deps(cache_manager=manager)
    def f(k: int) -> Any:
        calls(k)
        return value

    assert f(key) is value
    got = f(key)
    assert calls.count == 1
    assert_same(value, got)
