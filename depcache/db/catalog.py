"""What the database says about its tables: column types, keys, views, inheritance, cascades.

A :class:`Catalog` reads it once per table name and keeps it (until a schema change seen by
the tracker, or :meth:`Catalog.forget`). Queries run on the caller's connection through a
:data:`Runner`, a function that executes one statement and returns its rows, so an
integration decides how (a raw DB-API cursor, bypassing its own hooks).

PostgreSQL: names are resolved as the connection's ``search_path`` resolves them (with
``to_regclass``) the first time each is seen. A column narrows reads only when its type (a
domain's base type) is in :data:`~depcache.db.scheme.NARROWABLE_TYPES` and, for text, its
collation is deterministic. SQLite: tables only (no column narrows), views resolved to the
tables their SQL names.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .analyser import TableName, analyse
from .scheme import DEFAULT_SCHEMA, NARROWABLE_TYPES

__all__ = ["Catalog", "PostgresCatalog", "Runner", "SqliteCatalog", "TableInfo"]

#: runs one statement (paramstyle ``format``/``pyformat`` for PostgreSQL, ``qmark`` for SQLite)
#: and returns its rows
Runner = Callable[[str, "Sequence[Any] | Mapping[str, Any]"], list[tuple[Any, ...]]]

_TEXT_TYPES = frozenset({"text", "varchar", "name"})


@dataclass(frozen=True)
class TableInfo:
    """One relation, as the catalog describes it."""

    schema: str
    name: str
    kind: str = "r"  # pg_class.relkind: r table, p partitioned, v view, m matview, f foreign
    columns: Mapping[str, str] = field(default_factory=dict)  # name -> narrowable type or ""
    order: tuple[str, ...] = ()  # every column, in table order
    pk: tuple[str, ...] = ()
    temporary: bool = False
    system: bool = False  # pg_catalog, information_schema
    bases: tuple[TableName, ...] = ()  # a view's relations
    ancestors: tuple[TableName, ...] = ()  # inheritance parents (partitioned tables too)
    descendants: tuple[TableName, ...] = ()  # inheritance children, partitions
    on_delete: tuple[TableName, ...] = ()  # tables whose foreign keys cascade a delete here
    on_update: tuple[TableName, ...] = ()  # tables whose foreign keys cascade an update here
    referenced_by: tuple[TableName, ...] = ()  # every table with a foreign key to this one
    triggers: bool = False  # user triggers or rules: writes may change more than they say

    @property
    def qualified(self) -> TableName:
        """(schema, name)."""
        return (self.schema, self.name)

    def narrowable(self, column: str) -> bool:
        """Whether equality on ``column`` can narrow a read."""
        return bool(self.columns.get(column))


class Catalog:
    """Table descriptions, read on first use and kept."""

    def __init__(self) -> None:
        self._tables: dict[TableName, TableInfo | None] = {}
        self._functions: dict[str, str] = {}
        self._lock = threading.Lock()
        self.default_isolation = "read committed"

    def table(self, name: TableName, run: Runner) -> TableInfo | None:
        """The description of ``name`` (None: no such relation)."""
        try:
            return self._tables[name]
        except KeyError:
            pass
        info = self._load(name, run)
        with self._lock:
            self._tables[name] = info
            if info is not None:
                self._tables.setdefault(info.qualified, info)
        return info

    def function(self, name: str, run: Runner) -> str:
        """How a function called by ``name`` may touch data: ``builtin``, ``immutable``,
        ``stable`` (may read) or ``volatile`` (may write)."""
        try:
            return self._functions[name]
        except KeyError:
            pass
        kind = self._load_function(name, run)
        self._functions[name] = kind
        return kind

    def forget(self) -> None:
        """Read everything again on next use (after a schema change)."""
        with self._lock:
            self._tables.clear()
            self._functions.clear()

    def _load(self, name: TableName, run: Runner) -> TableInfo | None:
        raise NotImplementedError

    def _load_function(self, name: str, run: Runner) -> str:
        return "volatile"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


_PG_TABLE = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence,
  (SELECT coalesce(json_agg(json_build_array(
       a.attname,
       CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END,
       coalesce(co.collisdeterministic, true)) ORDER BY a.attnum), '[]'::json)
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
     LEFT JOIN pg_collation co ON co.oid = a.attcollation
     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT coalesce(json_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum)),
                   '[]'::json)
     FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
     WHERE i.indrelid = c.oid AND i.indisprimary),
  (SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_array(dn.nspname, dc.relname)), '[]'::jsonb)
     FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass
     JOIN pg_class dc ON dc.oid = d.refobjid AND d.refclassid = 'pg_class'::regclass
     JOIN pg_namespace dn ON dn.oid = dc.relnamespace
     WHERE r.ev_class = c.oid AND dc.oid <> c.oid AND c.relkind IN ('v', 'm')),
  (WITH RECURSIVE up(oid) AS (
       SELECT inhparent FROM pg_inherits WHERE inhrelid = c.oid
       UNION SELECT i.inhparent FROM pg_inherits i JOIN up ON i.inhrelid = up.oid)
   SELECT coalesce(json_agg(json_build_array(un.nspname, uc.relname)), '[]'::json)
     FROM up JOIN pg_class uc ON uc.oid = up.oid JOIN pg_namespace un ON un.oid = uc.relnamespace),
  (WITH RECURSIVE down(oid) AS (
       SELECT inhrelid FROM pg_inherits WHERE inhparent = c.oid
       UNION SELECT i.inhrelid FROM pg_inherits i JOIN down ON i.inhparent = down.oid)
   SELECT coalesce(json_agg(json_build_array(wn.nspname, wc.relname)), '[]'::json)
     FROM down JOIN pg_class wc ON wc.oid = down.oid
     JOIN pg_namespace wn ON wn.oid = wc.relnamespace),
  (SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_array(fn.nspname, fc.relname)), '[]'::jsonb)
     FROM pg_constraint f JOIN pg_class fc ON fc.oid = f.conrelid
     JOIN pg_namespace fn ON fn.oid = fc.relnamespace
     WHERE f.confrelid = c.oid AND f.contype = 'f' AND f.confdeltype IN ('c', 'n', 'd')),
  (SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_array(fn.nspname, fc.relname)), '[]'::jsonb)
     FROM pg_constraint f JOIN pg_class fc ON fc.oid = f.conrelid
     JOIN pg_namespace fn ON fn.oid = fc.relnamespace
     WHERE f.confrelid = c.oid AND f.contype = 'f' AND f.confupdtype IN ('c', 'n', 'd')),
  (SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_array(fn.nspname, fc.relname)), '[]'::jsonb)
     FROM pg_constraint f JOIN pg_class fc ON fc.oid = f.conrelid
     JOIN pg_namespace fn ON fn.oid = fc.relnamespace
     WHERE f.confrelid = c.oid AND f.contype = 'f'),
  EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND NOT g.tgisinternal)
    OR EXISTS (SELECT 1 FROM pg_rewrite w WHERE w.ev_class = c.oid AND w.rulename <> '_RETURN')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%s)
"""

_PG_FUNCTION = """
SELECT n.nspname, p.provolatile FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.proname = %s AND (%s::text IS NULL OR n.nspname = %s::text)
"""


def _names(rows: Any) -> tuple[TableName, ...]:
    return tuple((str(schema), str(name)) for schema, name in rows or ())


def _json(value: Any) -> Any:
    if isinstance(value, str):
        import json  # noqa: PLC0415  # drivers that return json as text

        return json.loads(value)
    return value


class PostgresCatalog(Catalog):
    """The catalog of a PostgreSQL database (``pg_catalog``)."""

    def _load(self, name: TableName, run: Runner) -> TableInfo | None:
        schema, table = name
        regclass = _quote(table) if schema is None else f"{_quote(schema)}.{_quote(table)}"
        rows = run(_PG_TABLE, [regclass])
        if not rows:
            return None
        (
            _oid,
            nsp,
            rel,
            kind,
            persistence,
            cols,
            pk,
            bases,
            up,
            down,
            deleted,
            updated,
            every,
            triggers,
        ) = rows[0]
        columns: dict[str, str] = {}
        order: list[str] = []
        for column, type_name, deterministic in _json(cols):
            order.append(column)
            narrow = type_name in NARROWABLE_TYPES and (
                bool(deterministic) or type_name not in _TEXT_TYPES
            )
            columns[column] = type_name if narrow else ""
        return TableInfo(
            schema=str(nsp),
            name=str(rel),
            kind=str(kind),
            columns=columns,
            order=tuple(order),
            pk=tuple(_json(pk)),
            temporary=persistence == "t",
            system=nsp in {"pg_catalog", "information_schema"} or str(nsp).startswith("pg_toast"),
            bases=_names(_json(bases)),
            ancestors=_names(_json(up)),
            descendants=_names(_json(down)),
            on_delete=_names(_json(deleted)),
            on_update=_names(_json(updated)),
            referenced_by=_names(_json(every)),
            triggers=bool(triggers),
        )

    def _load_function(self, name: str, run: Runner) -> str:
        schema, _, bare = name.rpartition(".")
        rows = run(_PG_FUNCTION, [bare, schema or None, schema or None])
        if not rows:
            return "volatile"  # unknown: assume the worst
        kinds = {"i": "immutable", "s": "stable", "v": "volatile"}
        if all(nsp == "pg_catalog" for nsp, _ in rows):
            return "builtin"
        worst = max((str(v) for nsp, v in rows if nsp != "pg_catalog"), key="isv".index)
        return kinds.get(worst, "volatile")

    def load_settings(self, run: Runner) -> None:
        """Read the database's default isolation level."""
        rows = run("SELECT current_setting('default_transaction_isolation')", [])
        if rows:
            self.default_isolation = str(rows[0][0]).lower()


class SqliteCatalog(Catalog):
    """The catalog of a SQLite database: tables and views; no column narrows."""

    def _load(self, name: TableName, run: Runner) -> TableInfo | None:
        schema, table = name
        source = "sqlite_master" if schema in (None, "main") else f"{_quote(schema)}.sqlite_master"
        rows = run(
            f"SELECT type, name, sql FROM {source} WHERE type IN ('table', 'view') "
            "AND lower(name) = lower(?)",
            [table],
        )
        temp = False
        if not rows and schema is None:
            rows = run(
                "SELECT type, name, sql FROM sqlite_temp_master WHERE type IN ('table', 'view') "
                "AND lower(name) = lower(?)",
                [table],
            )
            temp = bool(rows)
        if not rows:
            return None
        kind, real, sql = rows[0]
        bases: tuple[TableName, ...] = ()
        if kind == "view":
            bases = tuple(sorted(analyse(str(sql), "qmark", False).tables, key=str))
        refs = run(
            "SELECT m.name FROM sqlite_master m, pragma_foreign_key_list(m.name) f "
            "WHERE m.type = 'table' AND lower(f.\"table\") = lower(?) "
            "AND (f.on_delete IN ('CASCADE', 'SET NULL', 'SET DEFAULT') "
            "OR f.on_update IN ('CASCADE', 'SET NULL', 'SET DEFAULT'))",
            [real],
        )  # SQLite tables narrow nothing: both kinds of cascade count for every write
        triggers = run(
            "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND lower(tbl_name) = lower(?)",
            [real],
        )
        return TableInfo(
            schema=schema if schema is not None and schema != "main" else DEFAULT_SCHEMA,
            name=str(real),
            kind="v" if kind == "view" else "r",
            temporary=temp,
            bases=bases,
            on_delete=tuple((DEFAULT_SCHEMA, str(r[0])) for r in refs),
            on_update=tuple((DEFAULT_SCHEMA, str(r[0])) for r in refs),
            referenced_by=tuple((DEFAULT_SCHEMA, str(r[0])) for r in refs),
            triggers=bool(triggers),
        )

    def _load_function(self, name: str, run: Runner) -> str:
        return "builtin"  # SQLite has no stored functions; application functions are Python
