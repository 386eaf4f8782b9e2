"""Hypothesis strategies and settings profiles shared by the property and security tests.

Profiles: ``depcache-reliability`` (the default: modest example counts, so the files stay fast)
and ``depcache-reliability-long`` (ten times more), chosen with
``DEPCACHE_RELIABILITY_PROFILE=long``. Tests take their settings from :func:`examples`; no
profile is loaded globally, so other test files keep their own settings.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import zoneinfo
from collections import namedtuple
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from kombu.message import Message

from depcache.call._entry import decode_entry
from depcache.serializers.base import BaseSerializer
from tests.reliability.profile import PROFILE

__all__ = [
    "ARGUMENTS",
    "HASHABLE_VALUES",
    "JSON_VALUES",
    "LONG",
    "SOME_ARGUMENTS",
    "SUPPORTED_VALUES",
    "UNSUPPORTED_VALUES",
    "RecordingChannel",
    "WithCacheKey",
    "WithCacheKeyAttribute",
    "WithId",
    "WithPk",
    "bus_bodies",
    "canonical",
    "examples",
    "json_values",
    "kombu_messages",
    "lenient_decode",
    "lookalike",
    "reordered",
]

# --- settings profiles ----------------------------------------------------------------------------

LONG = PROFILE.name == "long"  # the suite-wide choice (tests/reliability/profile.py)
_LONG_FACTOR = 10

settings.register_profile(
    "depcache-reliability",
    max_examples=100,
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "depcache-reliability-long",
    parent=settings.get_profile("depcache-reliability"),
    max_examples=100 * _LONG_FACTOR,
)
PROFILE = settings.get_profile("depcache-reliability-long" if LONG else "depcache-reliability")


def examples(count: int) -> settings:
    """Settings for a test that runs ``count`` examples (ten times more with the long profile)."""
    return settings(PROFILE, max_examples=count * _LONG_FACTOR if LONG else count)


# --- text -----------------------------------------------------------------------------------------

#: Any code point, lone surrogates included (hypothesis leaves them out by default).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=30)

#: Long strings, cheaply: a short piece repeated up to 50k times (keys hash them whole).
HUGE_TEXT = st.builds(
    lambda piece, times: piece * times,
    st.text(st.characters(exclude_categories=()), min_size=1, max_size=4),
    st.integers(min_value=10_000, max_value=50_000),
)

# --- values the JSON serializer supports ----------------------------------------------------------

_OFFSETS = st.builds(
    lambda seconds: dt.timezone(dt.timedelta(seconds=seconds)),
    st.integers(min_value=-86_399, max_value=86_399),
) | st.just(dt.timezone.utc)


def _zones() -> st.SearchStrategy[zoneinfo.ZoneInfo]:
    try:
        zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:  # pragma: no cover - no time zone database
        return st.nothing()
    return st.sampled_from(
        ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC"]
    ).map(zoneinfo.ZoneInfo)


_DATETIMES = st.one_of(
    st.datetimes(),
    st.datetimes(timezones=_OFFSETS),
    st.datetimes(timezones=_zones(), allow_imaginary=True),
).flatmap(lambda d: st.sampled_from([d, d.replace(fold=1)]))

_TIMES = st.one_of(st.times(), st.times(timezones=_OFFSETS)).flatmap(
    lambda t: st.sampled_from([t, t.replace(fold=1)])
)

#: Scalars that can also be dict keys and set members (no NaN: NaN != NaN in a set).
HASHABLE_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 0]),
    st.floats(allow_nan=False),
    ANY_TEXT,
    st.binary(max_size=30),
    st.dates(),
    _DATETIMES,
    _TIMES,
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.uuids(),
)

#: Every scalar type, NaNs included.
SCALARS = HASHABLE_SCALARS | st.one_of(
    st.just(math.nan),
    st.sampled_from([Decimal("NaN"), Decimal("-NaN"), Decimal("sNaN"), Decimal("Infinity")]),
)

HASHABLE_VALUES = st.recursive(
    HASHABLE_SCALARS,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)

_TAG_LOOKALIKES = st.fixed_dictionaries(
    {"__dc": st.sampled_from(["t", "s", "d", "b", "dt", "exc", "os.system", "i", 1, None])},
    optional={"v": st.integers() | ANY_TEXT | st.lists(st.integers(), max_size=2)},
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(ANY_TEXT, inner, max_size=4),
        st.dictionaries(HASHABLE_VALUES, inner, max_size=4),
        st.sets(HASHABLE_VALUES, max_size=4),
        st.frozensets(HASHABLE_VALUES, max_size=4),
        _TAG_LOOKALIKES,
    )


#: Any value the JSON serializer promises to return exactly (see depcache/serializers/json.py).
SUPPORTED_VALUES = st.recursive(SCALARS, _containers, max_leaves=25)

# --- values it must refuse ------------------------------------------------------------------------


class Opaque:
    """A plain class: not a supported value type."""


@dataclass(frozen=True)
class FrozenPoint:
    """A hashable dataclass."""

    x: int


class Colour(IntEnum):
    """An int subclass (supported types are exact types only)."""

    RED = 1


class Text(str):
    """A str subclass."""


Pair = namedtuple("Pair", ["a", "b"])


class OddZone(dt.tzinfo):
    """A tzinfo class JSON cannot rebuild."""

    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)

    def dst(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, d: dt.datetime | None) -> str:
        return "ODD"


#: (value, the type name the error must give); hashable ones can go into sets and dict keys.
UNSUPPORTED_HASHABLE: list[tuple[Any, str]] = [
    (FrozenPoint(1), "tests.support.strategies.FrozenPoint"),
    (Colour.RED, "tests.support.strategies.Colour"),
    (Text("x"), "tests.support.strategies.Text"),
    (Pair(1, 2), "tests.support.strategies.Pair"),
    (1j, "builtins.complex"),
    (dt.datetime(2020, 1, 1, tzinfo=OddZone()), "tests.support.strategies.OddZone"),
    (Decimal, "builtins.type"),
]
UNSUPPORTED_UNHASHABLE: list[tuple[Any, str]] = [
    (Opaque(), "tests.support.strategies.Opaque"),
    (bytearray(b"x"), "builtins.bytearray"),
    (memoryview(b"x"), "builtins.memoryview"),
    (lambda: 1, "builtins.function"),
    (iter([1]), "builtins.list_iterator"),
]

UNSUPPORTED_VALUES = st.sampled_from(UNSUPPORTED_HASHABLE + UNSUPPORTED_UNHASHABLE)


# --- arguments that make keys ---------------------------------------------------------------------


class WithCacheKey:
    """Keyed by its ``__cache_key__()`` method."""

    def __init__(self, key: Any) -> None:
        self.key = key

    def __cache_key__(self) -> Any:
        return self.key


class WithCacheKeyAttribute:
    """Keyed by its ``_cache_key`` attribute."""

    def __init__(self, key: Any) -> None:
        self._cache_key = key


class WithPk:
    """Keyed by ``pk`` (a model instance)."""

    def __init__(self, pk: Any) -> None:
        self.pk = pk


class WithId:
    """Keyed by ``id``."""

    def __init__(self, ident: Any) -> None:
        self.id = ident


_KEY_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.floats(),
    st.sampled_from([0.0, -0.0, math.inf, -math.inf, 1.0, 1]),
    ANY_TEXT,
    st.binary(max_size=20),
)
_IDENTS = _KEY_SCALARS.filter(lambda v: v is not None)
_OBJECTS = st.one_of(
    st.builds(WithCacheKey, _KEY_SCALARS.filter(lambda v: v is not None)),
    st.builds(WithCacheKeyAttribute, _KEY_SCALARS.filter(lambda v: v is not None)),
    st.builds(WithPk, _IDENTS),
    st.builds(WithId, _IDENTS),
    st.sampled_from([int, str, WithPk, Opaque]),
)
_HASHABLE_ARGS = st.recursive(
    _KEY_SCALARS,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)

#: Arguments of decorated calls: scalars, unicode, huge strings, containers, keyed objects.
ARGUMENTS = st.recursive(
    st.one_of(_KEY_SCALARS, HUGE_TEXT, _OBJECTS),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(_HASHABLE_ARGS, inner, max_size=4),
        st.sets(_HASHABLE_ARGS, max_size=4),
        st.frozensets(_HASHABLE_ARGS, max_size=4),
    ),
    max_leaves=12,
)


#: Arguments, with scalars and keyed objects drawn more often at the top level.
SOME_ARGUMENTS = st.one_of(_KEY_SCALARS, _OBJECTS, ARGUMENTS)


def canonical(value: Any) -> str:  # noqa: PLR0911 - one branch per kind
    """A type-aware description of an argument, written independently of depcache.call._keys.

    Two arguments must share a cache entry exactly when their descriptions are equal: equal
    values of equal types (dicts and sets in any order), objects with equal cache keys.
    """
    cls = type(value)
    if cls in (type(None), bool, int, float, str, bytes):
        return f"{cls.__name__}:{value!r}"
    if cls in (list, tuple):
        return cls.__name__ + repr(tuple(canonical(v) for v in value))
    if cls in (set, frozenset):
        return cls.__name__ + repr(tuple(sorted(canonical(v) for v in value)))
    if cls is dict:
        return "dict" + repr(tuple(sorted((canonical(k), canonical(v)) for k, v in value.items())))
    if isinstance(value, type):
        return f"class:{value.__module__}.{value.__qualname__}"
    if isinstance(value, WithCacheKey):
        return f"key:{str(value.key)!r}"
    if isinstance(value, WithCacheKeyAttribute):
        return f"key:{str(value._cache_key)!r}"
    if isinstance(value, WithPk):
        return f"model:{cls.__name__}:{canonical(value.pk)}"
    if isinstance(value, WithId):
        return f"model:{cls.__name__}:{canonical(value.id)}"
    raise AssertionError(f"no canonical form for {value!r}")


def _swaps(value: Any) -> list[Any]:  # noqa: PLR0911, PLR0912 - one branch per kind
    """Values that look like ``value`` but differ in type or by a little."""
    cls = type(value)
    if cls is bool:
        return [int(value), float(value), str(value), not value]
    if cls is int:
        swaps: list[Any] = [str(value), value + 1, -value - 1, WithPk(value)]
        if value in (0, 1):
            swaps.append(bool(value))
        if abs(value) < 2**53:
            swaps.append(float(value))
        return swaps
    if cls is float:
        swaps = [-value, repr(value), WithId(value)]
        if math.isfinite(value) and value == int(value):
            swaps.append(int(value))
        return swaps
    if cls is str:
        return [value.encode("utf-8", "surrogatepass"), value + "'", WithCacheKey(value), [value]]
    if cls is bytes:
        return [value.decode("latin-1"), value + b"\x00"]
    if value is None:
        return ["None", 0, False, ()]
    if cls is list:
        return [tuple(value), value[:-1] if value else [None]]
    if cls is tuple:
        return [list(value), (*value, None)]
    if cls is set:
        return [frozenset(value), list(value)]
    if cls is frozenset:
        return [set(value), tuple(value)]
    if cls is dict:
        return [list(value.items()), dict(list(value.items())[:-1]) if value else {None: None}]
    if cls in (WithCacheKey, WithCacheKeyAttribute):
        key = value.key if cls is WithCacheKey else value._cache_key
        return [WithPk(key), str(key), WithCacheKey(str(key))]
    if cls in (WithPk, WithId):
        ident = value.pk if cls is WithPk else value.id
        return [WithId(ident) if cls is WithPk else WithPk(ident), ident]
    return [None]


@st.composite
def lookalike(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one part swapped for a look-alike (often equal by ``==``, never by type)."""
    cls = type(value)
    if cls in (list, tuple) and value and draw(st.booleans()):
        index = draw(st.integers(0, len(value) - 1))
        items = list(value)
        items[index] = draw(lookalike(items[index]))
        return cls(items)
    if cls is dict and value and draw(st.booleans()):
        key = draw(st.sampled_from(list(value)))
        return {**value, key: draw(lookalike(value[key]))}
    return draw(st.sampled_from(_swaps(value)))


def reordered(value: Any) -> Any:
    """An equal copy of ``value`` with every dict and set rebuilt in reverse order."""
    cls = type(value)
    if cls is list:
        return [reordered(v) for v in value]
    if cls is tuple:
        return tuple(reordered(v) for v in value)
    if cls is dict:
        return {reordered(k): reordered(v) for k, v in reversed(list(value.items()))}
    if cls in (set, frozenset):
        return cls(reordered(v) for v in reversed(list(value)))
    return value


# --- bus messages ---------------------------------------------------------------------------------


def json_values(surrogates: bool = True) -> st.SearchStrategy[Any]:
    """Any JSON document's data (what ``json.loads`` can return), lone surrogates optional."""
    chars = st.characters(exclude_categories=()) if surrogates else st.characters()
    text = st.text(chars, max_size=20)
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | text,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=15,
    )


JSON_VALUES = json_values()


def _encode(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def bus_bodies(surrogates: bool = True) -> st.SearchStrategy[bytes]:
    """Bodies of bus messages: message-shaped JSON (valid or nearly), any JSON, any bytes,
    broken UTF-8, truncated JSON, a BOM. Without ``surrogates``, no JSON string holds a lone
    surrogate."""
    values = json_values(surrogates)
    events = st.sampled_from(["user.updated", "order.paid", "nobody.listens", "boom"])
    data = st.fixed_dictionaries(
        {},
        optional={
            "id": values,
            "order": st.fixed_dictionaries({}, optional={"id": values}) | values,
            "n": values,
        },
    )
    shaped = st.fixed_dictionaries(
        {},
        optional={
            "event": events | st.text(max_size=10) | values,
            "data": data | values,
            "id": st.none() | st.text(max_size=10) | values,
            "dependencies": st.none() | st.lists(st.text(max_size=10), max_size=3) | values,
            "extra": values,
        },
    )
    return st.one_of(
        st.builds(_encode, shaped, st.booleans()),
        st.builds(_encode, values, st.booleans()),
        st.binary(max_size=200),
        st.builds(lambda b: b"\xef\xbb\xbf" + b, st.builds(_encode, shaped, st.just(False))),
        st.builds(
            lambda b, cut: b[:cut], st.builds(_encode, shaped, st.just(True)), st.integers(0, 60)
        ),
    )


class RecordingChannel:
    """The part of a kombu channel that Message.ack uses, recording acknowledgements."""

    no_ack_consumers = None

    def __init__(self) -> None:
        self.acked: list[int] = []

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.acked.append(delivery_tag)


def kombu_messages(bodies: Sequence[bytes], channel: RecordingChannel) -> list[Message]:
    """Real kombu messages with these bodies, acknowledged on ``channel``."""
    common: dict[str, Any] = {  # kombu types body and delivery_tag as str
        "content_type": "application/json",
        "delivery_info": {"exchange": "events", "routing_key": "user.updated"},
        "headers": {"x-producer": "tests"},
        "channel": channel,
    }
    return [
        Message(**{**common, "body": body, "delivery_tag": tag}) for tag, body in enumerate(bodies)
    ]


def lenient_decode(serializer: BaseSerializer, blob: bytes) -> Any:
    """The value a top-level hit on ``blob`` serves: the payload, whatever the dependency header
    holds (depcache only parses the header when an enclosing call needs it). Raises
    CorruptEntry when even that is unreadable."""
    try:
        entry = decode_entry(serializer, blob, dependencies=False)
    except TypeError:  # a version that always parses the header
        entry = decode_entry(serializer, blob)
    return entry.value
