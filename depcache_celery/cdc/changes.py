"""What one row change read from the replication stream invalidates.

Built on :mod:`depcache.db.scheme`: every change invalidates its table; the column values it
knows, of the old and the new row, invalidate their column dependencies; and whenever a value
that a narrowed read could have used is not known, the change also invalidates the table's
any-row dependency, which every narrowed read has. What the stream knows depends on the table's
``REPLICA IDENTITY`` (see :func:`change_dependencies`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from depcache.db.scheme import (
    NARROWABLE_TYPES,
    any_row_dependency,
    column_dependency,
    table_dependency,
    unknown_rows_dependencies,
)

from .pgoutput import UNCHANGED, Delete, Insert, Relation, Tuple, Update

__all__ = [
    "MAX_DEPENDENCY_CHARS",
    "Table",
    "change_dependencies",
    "resolve_types",
    "truncate_dependencies",
]

MAX_DEPENDENCY_CHARS = 1024
"""A column dependency longer than this (a long text value) is replaced by the any-row
dependency, which reaches every read narrowed on that value too: messages stay small."""


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


_UNKNOWN = _Unknown()


@dataclass(frozen=True)
class Table:
    """A relation with its columns' type names (``pg_type.typname`` after domains are resolved
    to their base type; None when the type could not be found)."""

    relation: Relation
    types: tuple[str | None, ...]

    @property
    def schema(self) -> str:
        return self.relation.schema

    @property
    def name(self) -> str:
        return self.relation.name


def _may_narrow(pg_type: str | None) -> bool:
    """Whether a read could be narrowed on a column of this type (unknown types could)."""
    return pg_type is None or pg_type in NARROWABLE_TYPES


def _image(
    table: Table, values: Tuple | None, known: Sequence[bool] | None = None
) -> list[object] | None:
    """The values of a tuple, with unknown ones (unchanged TOAST, non-key columns of a key-only
    image) replaced by ``_UNKNOWN``."""
    if values is None:
        return None
    if len(values) != len(table.types):
        raise ValueError(
            f"{table.schema}.{table.name}: a tuple of {len(values)} values for "
            f"{len(table.types)} columns"
        )
    image: list[object] = []
    for index, value in enumerate(values):
        if value is UNCHANGED or (known is not None and not known[index]):
            image.append(_UNKNOWN)
        else:
            image.append(value)
    return image


def _dependencies(table: Table, images: Sequence[list[object] | None]) -> set[str]:
    schema, name = table.schema, table.name
    deps = {table_dependency(name, schema)}
    any_row = False
    columns = table.relation.columns
    for image in images:
        if image is None:
            continue
        for column, pg_type, value in zip(columns, table.types, image, strict=True):
            if value is None:
                continue  # NULL: ``= NULL`` matches nothing; IS NULL reads depend on the table
            if value is _UNKNOWN or pg_type is None:
                any_row = any_row or _may_narrow(pg_type)
                continue
            if pg_type not in NARROWABLE_TYPES:
                continue
            dep = column_dependency(name, column.name, value, pg_type, schema)
            if dep is None or len(dep) > MAX_DEPENDENCY_CHARS:
                any_row = True
            else:
                deps.add(dep)
    if any_row:
        deps.add(any_row_dependency(name, schema))
    return deps


def _key_mask(table: Table) -> list[bool]:
    return [column.key for column in table.relation.columns]


def change_dependencies(table: Table, change: Insert | Update | Delete) -> set[str]:
    """The dependencies one ``INSERT``/``UPDATE``/``DELETE`` of ``table`` invalidates.

    - ``INSERT``: the new row is known (all of it).
    - ``UPDATE`` with an old image ``O`` (``REPLICA IDENTITY FULL``): both rows are known; a
      TOASTed value the update left unchanged is taken from the old row.
    - ``UPDATE`` otherwise (``DEFAULT``/``USING INDEX``: the old key columns, sent only when the
      key changed; ``NOTHING``: none): the new row is known, the old row only in its key columns
      (from the ``K`` image, else equal to the new row's, since the key did not change). Its
      other columns are unknown: if any could narrow a read, the any-row dependency.
    - ``DELETE``: the old image ``O`` (whole row) or ``K`` (key columns only: the others are
      unknown, as above).

    A value that has no canonical form, a column whose type is unknown, an unchanged TOASTed
    value that is not in the stream, and a value too long for a dependency also add the any-row
    dependency: the change then reaches every narrowed read of the table, never fewer.
    """
    if isinstance(change, Insert):
        return _dependencies(table, [_image(table, change.new)])
    if isinstance(change, Delete):
        mask = _key_mask(table) if change.old_kind == "K" else None
        return _dependencies(table, [_image(table, change.old, mask)])
    new = _image(table, change.new)
    assert new is not None
    if change.old_kind == "O" and change.old is not None:
        old = _image(table, change.old)
        assert old is not None
        new = [o if n is _UNKNOWN else n for o, n in zip(old, new, strict=True)]
        return _dependencies(table, [old, new])
    mask = _key_mask(table)
    if change.old_kind == "K" and change.old is not None:
        old = _image(table, change.old, mask)
    else:  # the key did not change (or there is none): the old key is the new one
        old = [value if key else _UNKNOWN for value, key in zip(new, mask, strict=True)]
    return _dependencies(table, [old, new])


def truncate_dependencies(tables: Sequence[Table]) -> set[str]:
    """A ``TRUNCATE`` cannot name its rows: every cached read of each table."""
    deps: set[str] = set()
    for table in tables:
        deps |= unknown_rows_dependencies(table.name, table.schema)
    return deps


def resolve_types(relation: Relation, names: Mapping[int, str | None]) -> Table:
    """``relation`` with its columns' type names looked up in ``names`` (OID to type name)."""
    return Table(relation, tuple(names.get(column.type_oid) for column in relation.columns))
