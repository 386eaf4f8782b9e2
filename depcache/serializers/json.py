"""JSONSerializer: JSON with type tags, so what comes back equals what was stored.

Plain JSON loses types (tuples become lists, int dict keys become strings, datetimes do not
exist). This serializer keeps them with tagged objects ``{"__dc": tag, "v": ...}`` and escapes
user dicts that could be mistaken for a tag, so a dict that looks like a marker comes back as
that dict. Output without any tag is prefixed ``P`` and parsed by the fastest JSON parser
(orjson when installed); tagged output is prefixed ``T`` and parsed with a hook that only
rebuilds the fixed set of types below: nothing in the data can name a class to import.

Supported (exact types only, nested freely): None, bool, int, float (also nan/inf), str, bytes,
list, tuple, dict (keys of any supported hashable type), set, frozenset, datetime (naive, fixed
offset, named or not, or ``zoneinfo.ZoneInfo``), date, time, timedelta, Decimal, UUID. Anything
else raises
SerializationError naming the type and where in the value it was found.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from .. import _json
from ..errors import SerializationError
from .base import BaseSerializer

__all__ = ["JSONSerializer", "strict_loads"]

#: JSON as RFC 8259 has it, for data anyone may have written: ValueError (naming what is wrong)
#: for malformed JSON, ``NaN``/``Infinity``, numbers beyond a float's range, over-long integers
#: and nesting deeper than the interpreter allows. The announcements' parser and
#: depcache_celery's bus messages read with it.
strict_loads = _json.strict_loads

TAG = "__dc"
_INT64 = 2**63


class _Unsupported(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value
        self.path: list[str] = []


class _Encoder:
    """One dump: converts a value to plain JSON data, noting whether any tag was needed."""

    __slots__ = ("tagged",)

    def __init__(self) -> None:
        self.tagged = False

    def tag(self, tag: str, value: Any) -> dict[str, Any]:
        self.tagged = True
        return {TAG: tag, "v": value}

    def encode(self, value: Any) -> Any:  # noqa: PLR0911, PLR0912 - one branch per type
        cls = type(value)
        if cls is str or cls is bool or value is None:
            return value
        if cls is int:
            return value if -_INT64 <= value < _INT64 else self.tag("i", str(value))
        if cls is float:
            return value if math.isfinite(value) else self.tag("f", repr(value))
        if cls is list:
            return self.items(value)
        if cls is dict:
            if all(type(k) is str for k in value) and TAG not in value:
                out = {}
                for k, v in value.items():
                    out[k] = self.child(k, v)
                return out
            pairs = [[self.child("<key>", k), self.child(k, v)] for k, v in value.items()]
            return self.tag("d", pairs)
        if cls is tuple:
            return self.tag("t", self.items(value))
        if cls is set:
            return self.tag("s", self.items(value))
        if cls is frozenset:
            return self.tag("fs", self.items(value))
        if cls is bytes:
            return self.tag("b", base64.b64encode(value).decode("ascii"))
        if cls is dt.datetime:
            return self.datetime(value)
        if cls is dt.date:
            return self.tag("da", value.isoformat())
        if cls is dt.time:
            if value.tzinfo is not None and type(value.tzinfo) is not dt.timezone:
                raise _Unsupported(value.tzinfo)
            named = _named_offset(value.tzinfo)
            if named is not None:
                naive = value.replace(tzinfo=None).isoformat()
                return self.tag("tmn", [naive, *named, value.fold])
            return self.tag("tmf" if value.fold else "tm", value.isoformat())
        if cls is dt.timedelta:
            return self.tag("td", [value.days, value.seconds, value.microseconds])
        if cls is Decimal:
            return self.tag("dec", str(value))
        if cls is UUID:
            return self.tag("u", str(value))
        raise _Unsupported(value)

    def datetime(self, value: dt.datetime) -> dict[str, Any]:
        zone = value.tzinfo
        named = _named_offset(zone)
        if named is not None:
            naive = value.replace(tzinfo=None).isoformat()
            return self.tag("dtn", [naive, *named, value.fold])
        if zone is None or type(zone) is dt.timezone:
            if value.fold:
                return self.tag("dtf", value.isoformat())
            return self.tag("dt", value.isoformat())
        if type(zone) is ZoneInfo and zone.key:
            naive = value.replace(tzinfo=None).isoformat()
            return self.tag("dtz", [naive, zone.key, value.fold])
        raise _Unsupported(zone)  # other tzinfo classes cannot be rebuilt exactly

    def items(self, values: Any) -> list[Any]:
        return [self.child(i, v) for i, v in enumerate(values)]

    def child(self, where: Any, value: Any) -> Any:
        try:
            return self.encode(value)
        except _Unsupported as exc:
            exc.path.append(f"[{where!r}]")
            raise


def _named_offset(zone: dt.tzinfo | None) -> tuple[list[int], str] | None:
    """A fixed-offset timezone with a name of its own (``timezone(offset, "CET")``): its offset
    as [days, seconds, microseconds] and its name; None for any other zone. The ISO format
    keeps only the offset, so such zones are stored apart."""
    if zone is None or type(zone) is not dt.timezone:
        return None
    offset = zone.utcoffset(None)
    name = zone.tzname(None)
    if name == dt.timezone(offset).tzname(None):
        return None
    return [offset.days, offset.seconds, offset.microseconds], name


def _named_zone(offset: Any, name: Any) -> dt.timezone:
    if not isinstance(name, str):
        raise TypeError(f"a timezone name must be a string, got {type(name).__name__}")
    days, seconds, micros = offset
    return dt.timezone(dt.timedelta(days=days, seconds=seconds, microseconds=micros), name)


def _named_datetime(v: Any) -> dt.datetime:
    naive, offset, name, fold = v
    zone = _named_zone(offset, name)
    return dt.datetime.fromisoformat(naive).replace(tzinfo=zone, fold=fold)


def _named_time(v: Any) -> dt.time:
    naive, offset, name, fold = v
    return dt.time.fromisoformat(naive).replace(tzinfo=_named_zone(offset, name), fold=fold)


def _set(v: Any) -> set[Any]:
    return set(v)


def _frozenset(v: Any) -> frozenset[Any]:
    return frozenset(v)


def _tuple(v: Any) -> tuple[Any, ...]:
    return tuple(v)


def _dict(v: Any) -> dict[Any, Any]:
    return dict(v)


def _int(v: Any) -> int:
    return int(v)


def _float(v: Any) -> float:
    return float(v)


def _bytes(v: Any) -> bytes:
    return base64.b64decode(v, validate=True)


def _folded_datetime(v: Any) -> dt.datetime:
    return dt.datetime.fromisoformat(v).replace(fold=1)


def _folded_time(v: Any) -> dt.time:
    return dt.time.fromisoformat(v).replace(fold=1)


def _zoned_datetime(v: Any) -> dt.datetime:
    naive, key, fold = v
    return dt.datetime.fromisoformat(naive).replace(tzinfo=ZoneInfo(key), fold=fold)


def _timedelta(v: Any) -> dt.timedelta:
    days, seconds, micros = v
    return dt.timedelta(days=days, seconds=seconds, microseconds=micros)


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "t": _tuple,
    "s": _set,
    "fs": _frozenset,
    "d": _dict,
    "i": _int,
    "f": _float,
    "b": _bytes,
    "dt": dt.datetime.fromisoformat,
    "dtz": _zoned_datetime,
    "dtn": _named_datetime,
    "tmn": _named_time,
    "dtf": _folded_datetime,
    "tmf": _folded_time,
    "da": dt.date.fromisoformat,
    "tm": dt.time.fromisoformat,
    "td": _timedelta,
    "dec": Decimal,
    "u": UUID,
}


def _hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(TAG)
    if tag is None:
        return obj
    if len(obj) != 2 or "v" not in obj:
        raise ValueError("malformed tagged value")
    return _DECODERS[tag](obj["v"])


class JSONSerializer(BaseSerializer):
    """The default serializer: safe, human-readable, exact for the types listed above."""

    def dump(self, obj: Any) -> bytes:
        """Serialize ``obj``; raise SerializationError naming an unsupported type."""
        encoder = _Encoder()
        try:
            data = encoder.encode(obj)
            return self._render(data, encoder.tagged)
        except RecursionError:
            raise SerializationError(
                "JSONSerializer cannot store this value: it is nested too deeply"
            ) from None
        except _Unsupported as exc:
            cls = type(exc.value)
            where = "".join(reversed(exc.path)) or "the value itself"
            raise SerializationError(
                f"JSONSerializer cannot store a value of type {cls.__module__}.{cls.__qualname__}"
                f" (at {where}); return supported types (see depcache.JSONSerializer) or "
                "configure another serializer"
            ) from None

    @staticmethod
    def _render(data: Any, tagged: bool) -> bytes:
        try:
            body = _json.dumps(data)
        except (TypeError, ValueError):  # orjson refuses lone surrogates and deep nesting
            return b"T" + _json.stdlib_dumps(data)
        return (b"T" if tagged else b"P") + body

    def load(self, data: str | bytes) -> Any:
        """Rebuild a value from ``dump``'s output; raise ValueError on malformed data."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        mark, body = raw[:1], raw[1:]
        if mark == b"P":
            return _json.loads(body)
        if mark == b"T":
            return json.loads(body, object_hook=_hook)
        raise ValueError("not JSONSerializer data")
