"""The dependency scheme for database rows: one place that names what a read depends on and
what a write invalidates.

Three kinds of dependency, all plain strings:

* ``db:<schema>.<table>``: the table as a whole. Reads that cannot be narrowed (ranges, ``LIKE``,
  aggregates without equality conditions, SQL the analyser cannot parse) depend on it; every
  committed write to the table invalidates it.
* ``db:<schema>.<table>:<column>=<value>``: the rows whose ``column`` equals ``value``. A read
  with ``column = value`` or ``column IN (...)`` depends on one per value; a committed write
  invalidates one per narrowable column of the old and of the new image of every row written.
* ``db:<schema>.<table>:*``: any row. Every narrowed read also depends on it; a write
  invalidates it when it cannot name its rows precisely: an image it does not know (an
  ``UPDATE`` seen without its old row, a bulk ``UPDATE``/``DELETE`` whose rows were not read
  back, ``TRUNCATE``) or a value it cannot put in canonical form. So an imprecise write reaches
  every cached read of the table, never fewer.

Names are normalised as PostgreSQL folds them: a table without a schema is in
:data:`DEFAULT_SCHEMA`; unquoted identifiers are given here already folded to lower case (the
analyser folds them). ``%``, ``:``, ``=`` and ``.`` inside a schema, table or column name are
percent-encoded, so the parts of a name can always be told apart; the value is last and kept
as it is.

A value narrows a read only when equality on its column type is equality of a canonical text
(:data:`NARROWABLE_TYPES`): integers, ``numeric`` (by value: ``1.50`` and ``1.5`` are one
value), ``text``/``varchar`` (binary equality; a column with a non-deterministic collation must
not be declared narrowable), ``uuid`` (lower case) and ``boolean``. Other types (``citext``,
``char(n)``, floats, timestamps, JSON, ...) compare equal across different texts, so reads on
them depend on the table. :func:`canonical_value` returns None for those; callers then fall
back to the table, never to less.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "DEFAULT_SCHEMA",
    "NARROWABLE_TYPES",
    "any_row_dependency",
    "canonical_value",
    "column_dependency",
    "dependencies_for",
    "qualify_table",
    "row_dependencies",
    "table_dependency",
    "unknown_rows_dependencies",
]

#: the schema of a table named without one (PostgreSQL's default ``search_path``)
DEFAULT_SCHEMA = "public"

_INTEGER = frozenset(
    {"int2", "int4", "int8", "smallint", "integer", "bigint", "serial", "bigserial"}
)
_NUMERIC = frozenset({"numeric", "decimal"})
_TEXT = frozenset({"text", "varchar", "character varying", "name"})
_UUID = frozenset({"uuid"})
_BOOL = frozenset({"bool", "boolean"})

#: PostgreSQL type names (``pg_type.typname`` or their SQL spelling) whose values narrow reads
NARROWABLE_TYPES = _INTEGER | _NUMERIC | _TEXT | _UUID | _BOOL

_TRUE_TEXT = frozenset({"t", "true", "y", "yes", "on", "1"})
_FALSE_TEXT = frozenset({"f", "false", "n", "no", "off", "0"})


def _encode_name(name: str) -> str:
    return name.replace("%", "%25").replace(":", "%3A").replace("=", "%3D").replace(".", "%2E")


def qualify_table(table: str, schema: str | None = None) -> str:
    """``schema.table`` with each part encoded; ``schema`` defaults to :data:`DEFAULT_SCHEMA`.

    ``table`` may already be qualified as ``schema.table`` (split at the first dot) when no
    ``schema`` is given.

    Raises:
        ValueError: ``table`` is empty.
    """
    if not isinstance(table, str) or not table:
        raise ValueError(f"table must be a non-empty string, got {table!r}")
    if schema is None:
        schema, dot, name = table.partition(".")
        if not dot:
            schema, name = DEFAULT_SCHEMA, table
    else:
        name = table
    if not schema or not name:
        raise ValueError(f"table {table!r} has an empty schema or name")
    return f"{_encode_name(schema)}.{_encode_name(name)}"


def table_dependency(table: str, schema: str | None = None) -> str:
    """The dependency of every row of ``table``: ``db:<schema>.<table>``."""
    return f"db:{qualify_table(table, schema)}"


def any_row_dependency(table: str, schema: str | None = None) -> str:
    """The dependency every narrowed read of ``table`` also has: ``db:<schema>.<table>:*``."""
    return f"db:{qualify_table(table, schema)}:*"


def unknown_rows_dependencies(table: str, schema: str | None = None) -> set[str]:
    """What a committed write to ``table`` invalidates when it cannot name its rows: every
    cached read of the table (the table and any-row dependencies)."""
    return {table_dependency(table, schema), any_row_dependency(table, schema)}


def _canonical_number(value: Any) -> str | None:
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite():
        return None
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _canonical_bool(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text in _TRUE_TEXT:
        return "true"
    return "false" if text in _FALSE_TEXT else None


def _canonical_uuid(value: Any) -> str | None:
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    except ValueError:
        return None


def _canonical_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | Decimal | uuid.UUID) and not isinstance(value, bool):
        return str(value)
    return None


def _kind_of(value: Any) -> str | None:
    """The type family a Python value is judged by when its column's type is unknown."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | Decimal):
        return "numeric"
    if isinstance(value, uuid.UUID):
        return "uuid"
    if isinstance(value, str):
        return "text"
    return None


def canonical_value(value: Any, pg_type: str | None = None) -> str | None:
    """The text a value is named by in a column dependency, or None when it cannot narrow.

    ``pg_type`` is the column's type (``pg_type.typname`` such as ``int4``, or its SQL name).
    Text as PostgreSQL outputs it (``"t"`` for a boolean, ``"1.50"`` for a numeric) is
    accepted with its ``pg_type``. When ``pg_type`` is None the value's Python type decides
    (int, Decimal, str, UUID, bool): right for a write image, whose values carry their column's
    type, but a read parameter compared to a column of another type (``'01'`` against an
    integer column) must be given the column's type, or not narrow.
    """
    if value is None:
        return None  # ``= NULL`` matches nothing; ``IS NULL`` reads depend on the table
    kind = _kind_of(value) if pg_type is None else pg_type.strip().lower()
    if kind in _BOOL:
        return _canonical_bool(value)
    if kind in _UUID:
        return _canonical_uuid(value)
    if kind in _INTEGER or kind in _NUMERIC:
        return _canonical_number(value)
    return _canonical_text(value) if kind in _TEXT else None


def column_dependency(
    table: str, column: str, value: Any, pg_type: str | None = None, schema: str | None = None
) -> str | None:
    """``db:<schema>.<table>:<column>=<value>``, or None when the value cannot narrow (then
    depend on :func:`table_dependency` instead)."""
    text = canonical_value(value, pg_type)
    if text is None:
        return None
    if not isinstance(column, str) or not column:
        raise ValueError(f"column must be a non-empty string, got {column!r}")
    return f"db:{qualify_table(table, schema)}:{_encode_name(column)}={text}"


def row_dependencies(
    table: str,
    *images: Mapping[str, Any] | None,
    types: Mapping[str, str] | None = None,
    schema: str | None = None,
) -> set[str]:
    """What a committed write of one row invalidates: the table, and a column dependency for
    every narrowable column of every given image (the old and the new row; None for an image
    that does not exist, such as the old row of an insert: an image that exists but is not
    known calls for :func:`unknown_rows_dependencies` instead).

    ``types`` maps column names to their types; a column without one is judged by the Python
    type of its value. A value of a narrowable type that has no canonical form adds the
    any-row dependency, so reads narrowed on that column are still reached.
    """
    deps = {table_dependency(table, schema)}
    for image in images:
        if image is None:
            continue
        for column, value in image.items():
            pg_type = None if types is None else types.get(column)
            dep = column_dependency(table, column, value, pg_type, schema)
            if dep is not None:
                deps.add(dep)
            elif value is not None and pg_type is not None and _narrowable(pg_type):
                deps.add(any_row_dependency(table, schema))
    return deps


def _narrowable(pg_type: str) -> bool:
    return pg_type.strip().lower() in NARROWABLE_TYPES


def dependencies_for(
    table: str,
    conditions: Mapping[str, Iterable[Any]] | None,
    types: Mapping[str, str] | None = None,
    schema: str | None = None,
) -> set[str]:
    """What a read of ``table`` depends on.

    ``conditions`` maps a column to the values it is compared to by ``=`` or ``IN``, each
    ANDed with the rest of the query. With one column whose values all narrow: a column
    dependency per value, plus the any-row dependency. Otherwise the table.
    """
    if conditions:
        for column, values in conditions.items():
            pg_type = None if types is None else types.get(column)
            deps = set()
            for value in values:
                dep = column_dependency(table, column, value, pg_type, schema)
                if dep is None:
                    break
                deps.add(dep)
            else:
                if deps:
                    deps.add(any_row_dependency(table, schema))
                    return deps
    return {table_dependency(table, schema)}
