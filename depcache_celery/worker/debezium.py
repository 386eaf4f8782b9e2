"""Debezium change events on the bus: each row change becomes the invalidation the dependency
scheme (:mod:`depcache.db.scheme`) names for it.

A team running Debezium points it at the exchange; the worker recognises its envelopes (a JSON
object without ``event``, with ``op`` and ``source``, at the top or under ``payload`` next to a
``schema``) and routes each as the event ``db.<schema>.<table>.<op>`` (``op`` one of
``insert``, ``update``, ``delete``, ``read`` (a snapshot row), ``truncate``, ``message``)
whose data is ``{"source": "debezium", "schema", "table", "op", "before", "after",
"ts_ms"}``, with the computed dependencies:

- ``c`` (insert) and ``r`` (snapshot read: the connector may have missed changes before it, so
  the row counts as written): the table, and a column dependency per value of ``after``;
- ``u``: the same for ``before`` and ``after``; no ``before`` (PostgreSQL's ``REPLICA IDENTITY
  DEFAULT``) means the old row is unknown: the any-row dependency too;
- ``d``: the same for ``before``; a ``null`` in it may be a column outside the replica
  identity, which Debezium sends as null (``DEFAULT``), so it adds the any-row dependency when
  a read could have narrowed on that column; no ``before`` at all: every cached read of the
  table;
- ``t``: every cached read of the table; ``m`` (a logical decoding message): nothing.

Column types come from the envelope's ``schema`` when it is there (Kafka Connect types and
Debezium's semantic names: ``Decimal`` bytes are decoded with their scale, ``Uuid`` strings
normalised, timestamps never narrow, ``__debezium.source.column.type`` when
``column.propagate.source.type`` is on). Without it, or for a value whose column type is
ambiguous, every reading a narrowable column could give is named (a string: as text, and as a
number or UUID when it parses as one), and where no reading can be computed (a base64 string
that may be a ``Decimal`` whose scale is unknown, a float that may be a rounded ``numeric``, an
unavailable TOASTed value ``__debezium_unavailable_value``) the write is imprecise for that
column: the any-row dependency. So a Debezium event never invalidates less than the scheme
asks.

A tombstone (the body ``null``, or ``{"schema": null, "payload": null}``) carries no change: it
becomes the event ``debezium.tombstone`` with no dependencies (acknowledged, counted as
unhandled). A malformed envelope raises :class:`EnvelopeError` (the worker dead-letters it).

This module does not import the worker's message module; :func:`depcache_celery.parse_message`
calls it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from depcache.db.scheme import (
    DEFAULT_SCHEMA,
    NARROWABLE_TYPES,
    any_row_dependency,
    canonical_value,
    column_dependency,
    table_dependency,
    unknown_rows_dependencies,
)

__all__ = ["OPS", "TOMBSTONE_EVENT", "Change", "EnvelopeError", "is_envelope", "parse_envelope"]

OPS = {
    "c": "insert",
    "u": "update",
    "d": "delete",
    "r": "read",
    "t": "truncate",
    "m": "message",
}
"""Debezium's ``op`` codes and the event names' operation words."""

TOMBSTONE_EVENT = "debezium.tombstone"
UNAVAILABLE = "__debezium_unavailable_value"
_UNAVAILABLE_B64 = base64.b64encode(UNAVAILABLE.encode()).decode()

_MAX_DEPENDENCY_CHARS = 1024  # as the CDC: a longer column dependency becomes the any-row one
_TIME_NAMES = frozenset(
    {
        "io.debezium.time.Date",
        "io.debezium.time.Time",
        "io.debezium.time.MicroTime",
        "io.debezium.time.NanoTime",
        "io.debezium.time.Timestamp",
        "io.debezium.time.MicroTimestamp",
        "io.debezium.time.NanoTimestamp",
        "io.debezium.time.MicroDuration",
        "org.apache.kafka.connect.data.Date",
        "org.apache.kafka.connect.data.Time",
        "org.apache.kafka.connect.data.Timestamp",
    }
)
_UNNARROWABLE_STRING_NAMES = frozenset(
    {
        "io.debezium.time.ZonedTimestamp",
        "io.debezium.time.ZonedTime",
        "io.debezium.time.IsoDate",
        "io.debezium.time.IsoTime",
        "io.debezium.time.IsoTimestamp",
        "io.debezium.time.Interval",
        "io.debezium.data.Json",
        "io.debezium.data.Xml",
        "io.debezium.data.Enum",
        "io.debezium.data.EnumSet",
        "io.debezium.data.Ltree",
    }
)
_DECIMAL = "org.apache.kafka.connect.data.Decimal"
_VARIABLE_DECIMAL = "io.debezium.data.VariableScaleDecimal"
_UUID = "io.debezium.data.Uuid"
# Connect types and semantic names -> a type of the scheme; "" never narrows; None: a value that
# may narrow but cannot be read exactly (a double may be a rounded numeric); "string": ambiguous
_PLAIN: dict[object, str | None] = {
    "boolean": "bool",
    **dict.fromkeys(("int8", "int16", "int32", "int64"), "int8"),
    "float32": "",
    "float64": None,
    **dict.fromkeys(("bytes", "struct", "array", "map"), ""),
    "string": "string",
}
_NAMED: dict[object, str] = {
    _DECIMAL: "numeric",
    _VARIABLE_DECIMAL: "numeric",
    _UUID: "uuid",
    **dict.fromkeys(_TIME_NAMES, ""),
    **dict.fromkeys(_UNNARROWABLE_STRING_NAMES, ""),
}
_SOURCE_TYPE = "__debezium.source.column.type"
_INT_TYPES = frozenset({"int8", "int16", "int32", "int64"})
_BASE64 = re.compile(
    r"(?:[A-Za-z0-9+/]{4})+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?|[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}="
)


class EnvelopeError(ValueError):
    """A Debezium envelope with a missing or ill-typed field; the message says which."""


@dataclass(frozen=True)
class Change:
    """One envelope as a bus event: its name, data and dependencies."""

    event: str
    data: dict[str, Any]
    dependencies: list[str] = field(default_factory=list)
    id: str | None = None


def is_envelope(obj: object) -> bool:
    """Whether a parsed JSON body is a Debezium envelope (or tombstone) rather than an event:
    ``null``, or an object without ``event`` that has ``op`` (at the top or in ``payload``), or
    the ``{"schema", "payload"}`` wrapper."""
    if obj is None:
        return True
    if not isinstance(obj, dict) or "event" in obj:
        return False
    if "payload" in obj and "schema" in obj:
        return True
    payload = obj.get("payload") if "payload" in obj else obj
    return isinstance(payload, dict) and "op" in payload and "source" in payload


def parse_envelope(obj: object, prefix: str = "db") -> Change:
    """The bus event of one Debezium envelope (see the module's docstring).

    Raises:
        EnvelopeError: ``payload`` is not an object; ``op`` is missing or unknown; ``source``,
            ``source.table`` or ``source.schema`` is missing or not text; ``before``/``after``
            is not an object (or is missing where the op needs it); a value does not match its
            declared type.
    """
    unwrapped = _unwrap(obj)
    if unwrapped is None:
        return Change(TOMBSTONE_EVENT, {"source": "debezium"})
    payload, envelope_schema = unwrapped
    op = payload.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise EnvelopeError(f"'op' must be one of {', '.join(OPS)}, got {op!r}")
    source = payload.get("source")
    if not isinstance(source, dict):
        raise EnvelopeError(f"'source' must be an object, got {_kind(source)}")
    schema = source.get("schema")
    if schema is None:
        schema = DEFAULT_SCHEMA  # MySQL and others have no schema: as readers name the table
    if not isinstance(schema, str) or not schema:
        raise EnvelopeError(f"'source.schema' must be non-empty text, got {schema!r}")
    table = source.get("table")
    before = _image(payload, "before")
    after = _image(payload, "after")
    data = {
        "source": "debezium",
        "schema": schema,
        "table": table,
        "op": OPS[op],
        "before": before,
        "after": after,
        "ts_ms": payload.get("ts_ms"),
    }
    if op == "m":
        return Change(f"{prefix}.message", data)
    if not isinstance(table, str) or not table:
        raise EnvelopeError(f"'source.table' must be non-empty text, got {table!r}")
    event = f"{prefix}.{schema}.{table}.{OPS[op]}"
    if op == "t":
        return Change(event, data, sorted(unknown_rows_dependencies(table, schema)))
    deps = _Deps(table, schema)
    fields = _fields(envelope_schema)
    if op in ("c", "r", "u"):
        deps.image(_required(after, "after", op), fields.get("after"), complete=True)
    if op == "d" and before is not None:
        deps.image(before, fields.get("before"), complete=False)
    elif op in ("u", "d") and before is not None:
        deps.image(before, fields.get("before"), complete=True)
    elif op in ("u", "d"):
        deps.imprecise()  # the old row is unknown
    return Change(event, data, deps.result())


def _unwrap(obj: object) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """``(payload, schema)`` of an envelope; None for a tombstone."""
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise EnvelopeError(f"not an object but {_kind(obj)}")
    wrapped = "payload" in obj
    payload = obj.get("payload") if wrapped else obj
    if payload is None:
        return None
    if not isinstance(payload, dict):
        raise EnvelopeError(f"'payload' must be an object, got {_kind(payload)}")
    envelope_schema = obj.get("schema") if wrapped else None
    if envelope_schema is not None and not isinstance(envelope_schema, dict):
        raise EnvelopeError(f"'schema' must be an object, got {_kind(envelope_schema)}")
    return payload, envelope_schema


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _image(payload: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = payload.get(name)
    if value is not None and not isinstance(value, dict):
        raise EnvelopeError(f"'{name}' must be an object or null, got {_kind(value)}")
    return value


def _required(image: dict[str, Any] | None, name: str, op: str) -> dict[str, Any]:
    if image is None:
        raise EnvelopeError(f"op {op!r} needs '{name}'")
    return image


def _fields(envelope_schema: dict[str, Any] | None) -> dict[str, dict[str, dict[str, Any]]]:
    """From the envelope's Connect schema: per image (``before``/``after``), per column, its
    field schema."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    if envelope_schema is None:
        return result
    for image in envelope_schema.get("fields") or ():
        if not isinstance(image, dict) or image.get("field") not in ("before", "after"):
            continue
        columns = {
            column["field"]: column
            for column in image.get("fields") or ()
            if isinstance(column, dict) and isinstance(column.get("field"), str)
        }
        result[str(image["field"])] = columns
    return result


class _Deps:
    """Dependencies of one change, built image by image."""

    def __init__(self, table: str, schema: str) -> None:
        self.table = table
        self.schema = schema
        self.deps = {table_dependency(table, schema)}
        self.any_row = False

    def imprecise(self) -> None:
        self.any_row = True

    def image(
        self, image: dict[str, Any], fields: dict[str, dict[str, Any]] | None, *, complete: bool
    ) -> None:
        """Add the dependencies of one image; ``complete`` False: its nulls may be unknowns."""
        for column, value in image.items():
            field_schema = None if fields is None else fields.get(column)
            if value is None:
                if not complete and _may_narrow(field_schema):
                    self.any_row = True
                continue
            readings, imprecise = _readings(column, field_schema, value)
            self.any_row = self.any_row or imprecise
            for pg_type, reading in readings:
                dep = column_dependency(self.table, column, reading, pg_type, self.schema)
                if dep is None or len(dep) > _MAX_DEPENDENCY_CHARS:
                    self.any_row = self.any_row or pg_type in NARROWABLE_TYPES
                else:
                    self.deps.add(dep)

    def result(self) -> list[str]:
        if self.any_row:
            self.deps.add(any_row_dependency(self.table, self.schema))
        return sorted(self.deps)


def _may_narrow(field_schema: dict[str, Any] | None) -> bool:
    """Whether a read could be narrowed on a column with this field schema (None: unknown)."""
    if field_schema is None:
        return True
    readings, imprecise = _declared(field_schema, _PROBE)
    return imprecise or bool(readings)


_PROBE = object()  # a value standing for "some value" when only the type matters

Reading = tuple[str, Any]


def _readings(
    column: str, field_schema: dict[str, Any] | None, value: Any
) -> tuple[list[Reading], bool]:
    """The (type, value) readings a narrowable column could give for ``value``, and whether
    some reading could not be computed (then the any-row dependency is needed)."""
    if value in (UNAVAILABLE, _UNAVAILABLE_B64):
        return [], True
    if field_schema is None:
        return _undeclared(value)
    try:
        return _declared(field_schema, value)
    except (TypeError, ValueError, binascii.Error, InvalidOperation) as exc:
        raise EnvelopeError(
            f"column {column!r}: value {value!r} does not match its schema "
            f"{field_schema.get('type')!r}: {exc}"
        ) from None


def _declared(field_schema: dict[str, Any], value: Any) -> tuple[list[Reading], bool]:
    kind = field_schema.get("type")
    name = field_schema.get("name")
    parameters = field_schema.get("parameters") or {}
    probe = value is _PROBE
    decoded = value if probe else _decode(kind, name, parameters, value)
    source_type = parameters.get(_SOURCE_TYPE) if isinstance(parameters, dict) else None
    if isinstance(source_type, str) and source_type:
        return _by_source_type(source_type.strip().lower(), decoded, probe)
    pg_type = _NAMED[name] if name in _NAMED else _PLAIN.get(kind)
    if pg_type is None:
        return [], True  # a type whose values may narrow but cannot be read here
    if not pg_type:
        return [], False  # never narrows
    if pg_type == "string":
        return [("text", decoded)] if probe else _string_readings(decoded), False
    return [(pg_type, decoded)], False


def _by_source_type(pg_type: str, decoded: Any, probe: bool) -> tuple[list[Reading], bool]:
    """Readings of a column whose PostgreSQL type the connector propagated."""
    if pg_type not in NARROWABLE_TYPES:
        return [], False
    if not probe and canonical_value(decoded, pg_type) is None:
        return [], True
    return [(pg_type, decoded)], False


def _decode(kind: Any, name: Any, parameters: Any, value: Any) -> Any:
    """A value as its Connect type says (a Decimal from base64 bytes and a scale)."""
    if kind == "boolean":
        if not isinstance(value, bool):
            raise TypeError("expected a boolean")
        return value
    if kind in _INT_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("expected an integer")
        return value
    if kind == "bytes" and name == _DECIMAL:
        scale = int((parameters or {}).get("scale", 0))
        return _decimal(value, scale)
    if kind == "struct" and name == _VARIABLE_DECIMAL:
        if not isinstance(value, dict):
            raise TypeError("expected an object of scale and value")
        return _decimal(value.get("value"), int(value.get("scale", 0)))
    if kind == "string" and not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _decimal(raw: Any, scale: int) -> Decimal:
    if not isinstance(raw, str):
        raise TypeError("expected base64 text")
    unscaled = int.from_bytes(base64.b64decode(raw, validate=True), "big", signed=True)
    return Decimal(unscaled).scaleb(-scale)


def _string_readings(text: str) -> list[Reading]:
    """A string of a column whose type is not known more precisely: text, and a number or a
    UUID when it reads as one (``numeric`` sent as text, ``uuid`` without its semantic name)."""
    readings: list[Reading] = [("text", text)]
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        number = None
    if number is not None and number.is_finite():
        readings.append(("numeric", number))
    with contextlib.suppress(ValueError):
        readings.append(("uuid", uuid.UUID(text)))
    return readings


def _undeclared(value: Any) -> tuple[list[Reading], bool]:
    """A value without a schema: judged by its JSON type."""
    readings: list[Reading] = []
    imprecise = False
    if isinstance(value, bool):
        readings = [("bool", value)]
    elif isinstance(value, int):
        readings = [("int8", value)]  # or a timestamp: an extra dependency is harmless
    elif isinstance(value, str):
        # base64 text may be a Decimal whose scale only the schema gives
        readings, imprecise = _string_readings(value), bool(_BASE64.fullmatch(value))
    elif isinstance(value, dict) and set(value) == {"scale", "value"}:
        try:
            readings = [("numeric", _decimal(value["value"], int(value["scale"])))]
        except (TypeError, ValueError, binascii.Error):
            imprecise = True
    elif not isinstance(value, list):  # arrays never narrow; floats and objects may
        imprecise = True
    return readings, imprecise
