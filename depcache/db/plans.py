"""Plans: a template bound to the catalog, turned into dependencies for each execution.

A :class:`ReadPlan` holds what a read depends on whatever its parameters (tables it cannot
narrow, views' tables) and, per narrowable table, the candidate conditions (column, type,
values); :meth:`ReadPlan.dependencies` fills in one execution's parameters. A
:class:`WritePlan` holds, per write, what it invalidates whatever happens (the tables around
it: inheritance, cascades, views) and how to name its rows (images from the statement, from
``RETURNING``, from reading the rows before or after).

Column values narrow a read only when the parameter's Python type is one the column's type
compares exactly (no floats; text only for text columns), and an explicit cast keeps the
column's type family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .analyser import ColumnRef, Scope, TableName, Template, Value, Write
from .catalog import Catalog, Runner, TableInfo
from .scheme import (
    any_row_dependency,
    canonical_value,
    column_dependency,
    table_dependency,
    unknown_rows_dependencies,
)

__all__ = ["UNKNOWN", "ReadPlan", "WritePlan", "bind_read", "bind_write", "family", "param"]

_FAMILIES = {
    **dict.fromkeys(("int2", "int4", "int8", "smallint", "integer", "bigint"), "int"),
    **dict.fromkeys(("serial", "bigserial"), "int"),
    **dict.fromkeys(("numeric", "decimal"), "numeric"),
    **dict.fromkeys(("text", "varchar", "character varying", "name"), "text"),
    "uuid": "uuid",
    **dict.fromkeys(("bool", "boolean"), "bool"),
}
_NUMBERS = frozenset({"int", "numeric"})
_INTEGERS = frozenset(t for t, f in _FAMILIES.items() if f == "int")
_TEXTS = frozenset(t for t, f in _FAMILIES.items() if f == "text")


class _Unknown:
    __repr__ = lambda self: "UNKNOWN"  # noqa: E731


#: a value the statement does not show (an expression, DEFAULT, a missing parameter)
UNKNOWN: Any = _Unknown()


def family(pg_type: str) -> str:
    """The type family of a narrowable PostgreSQL type ("" for others)."""
    return _FAMILIES.get(pg_type, "")


def _compatible(a: str, b: str) -> bool:
    return a == b or (a in _NUMBERS and b in _NUMBERS)


def param(params: Any, key: Any) -> Any:
    """The value of parameter ``key`` (a position or a name); UNKNOWN when missing."""
    try:
        return params[key]
    except (KeyError, IndexError, TypeError):
        return UNKNOWN


def _read_value(value: Any, column_family: str) -> Any:
    """``value`` if comparing it to a column of ``column_family`` is exact, else UNKNOWN."""
    if value is None or isinstance(value, float | bytes | bytearray | memoryview):
        return UNKNOWN
    if column_family == "text" and not isinstance(value, str):
        return UNKNOWN
    if column_family == "bool" and not isinstance(value, bool | str):
        return UNKNOWN
    if column_family in _NUMBERS and isinstance(value, bool):
        return UNKNOWN
    return value


def _text(value: Any, pg_type: str) -> str | None:
    """canonical_value, with the common cases first (an int key, a text value)."""
    kind = type(value)
    if kind is int and pg_type in _INTEGERS:
        return str(value)
    if kind is str and pg_type in _TEXTS:
        return value  # type: ignore[no-any-return]
    return canonical_value(value, pg_type)


def _values(refs: Sequence[Value], params: Any, column_family: str) -> list[Any] | None:
    out: list[Any] = []
    for ref in refs:
        if ref.cast is not None and not _compatible(ref.cast, column_family):
            return None
        raw = ref.literal if ref.param is None else param(params, ref.param)
        if ref.expand:
            if not isinstance(raw, list | tuple):
                return None
            items: Iterable[Any] = raw
        else:
            items = (raw,)
        for item in items:
            value = _read_value(item, column_family)
            if value is UNKNOWN:
                return None
            out.append(value)
    return out if out else None


@dataclass(frozen=True)
class _Candidate:
    column: str
    pg_type: str
    values: tuple[Value, ...]


Reader = Callable[[Any], list[str] | None]


def _reader(candidate: _Candidate, prefix: str) -> Reader:
    """The column dependencies one condition gives for an execution's parameters (None: it
    cannot narrow them), compiled once per plan: ``col = :param`` on an integer or text column
    with an ``int`` or ``str`` parameter, the common case, takes a short path that gives what
    the general one would."""
    pg_type = candidate.pg_type
    column_family = _FAMILIES.get(pg_type, "")
    refs = candidate.values

    def general(params: Any) -> list[str] | None:
        values = _values(refs, params, column_family)
        if values is None:
            return None
        out: list[str] = []
        for value in values:
            text = _text(value, pg_type)
            if text is None:
                return None
            out.append(prefix + text)
        return out

    only = refs[0] if len(refs) == 1 else None
    if only is None or only.param is None or only.cast is not None or only.expand:
        return general
    key = only.param
    kind = int if pg_type in _INTEGERS else str if pg_type in _TEXTS else None
    if kind is None:
        return general

    def single(params: Any) -> list[str] | None:
        try:
            value = params[key]
        except (KeyError, IndexError, TypeError):
            return None
        if type(value) is kind:  # an int on an integer column, a str on a text one
            return [prefix + str(value)]
        return general(params)

    return single


@dataclass(frozen=True)
class _Narrow:
    info: TableInfo
    candidates: tuple[_Candidate, ...]
    table: str = ""  # the table dependency
    any_row: str = ""  # the any-row dependency
    readers: tuple[Reader, ...] = ()  # per candidate: its column dependencies for parameters

    @classmethod
    def of(cls, info: TableInfo, candidates: tuple[_Candidate, ...]) -> _Narrow:
        """Built once per plan: the names of the dependencies, all but their values."""
        any_row = any_row_dependency(info.name, info.schema)
        readers = tuple(
            _reader(c, column_dependency(info.name, c.column, 0, "int4", info.schema)[:-1])  # type: ignore[index]
            for c in candidates
        )
        table = table_dependency(info.name, info.schema)
        return cls(info, candidates, table, any_row, readers)


@dataclass(frozen=True)
class ReadPlan:
    """What one read template depends on."""

    uncacheable: str | None = None
    static: frozenset[str] = frozenset()
    narrow: tuple[_Narrow, ...] = ()

    def dependencies(self, params: Any) -> list[str]:
        """The dependencies of one execution with ``params`` (maybe with repeats)."""
        deps = list(self.static)
        for table in self.narrow:
            for read in table.readers:
                found = read(params)
                if found is not None:
                    deps.extend(found)
                    deps.append(table.any_row)
                    break
            else:
                deps.append(table.table)
        return deps


class _Refusal(Exception):
    """A read that must not be cached."""


def _relation(catalog: Catalog, name: TableName, run: Runner) -> TableInfo:
    info = catalog.table(name, run)
    if info is None:
        raise _Refusal(f"unknown relation {name[1]!r}")
    if info.temporary:
        raise _Refusal(f"temporary table {info.name!r}")
    if info.system:
        raise _Refusal(f"system catalog {info.name!r}")
    if info.kind == "f":
        raise _Refusal(f"foreign table {info.name!r}")
    return info


def _whole(catalog: Catalog, name: TableName, run: Runner, seen: set[TableName]) -> set[str]:
    """The dependencies of reading all of ``name`` (a view: its relations, recursively)."""
    info = _relation(catalog, name, run)
    if info.qualified in seen:
        return set()
    seen.add(info.qualified)
    if info.kind == "v":
        deps: set[str] = set()
        for base in info.bases:
            deps |= _whole(catalog, base, run, seen)
        return deps
    return {table_dependency(info.name, info.schema)}


def bind_read(template: Template, catalog: Catalog, run: Runner) -> ReadPlan:
    """The read plan of ``template`` on the database ``catalog`` describes."""
    if template.uncacheable is not None:
        return ReadPlan(uncacheable=template.uncacheable)
    try:
        for function in template.functions:
            kind = catalog.function(function, run)
            if kind in {"stable", "volatile"}:
                raise _Refusal(f"calls {function}(), which may read tables")
        static: set[str] = set()
        for name in template.whole_tables:
            static |= _whole(catalog, name, run, set())
        narrow: list[_Narrow] = []
        for scope in template.scopes:
            _bind_scope(scope, catalog, run, static, narrow)
    except _Refusal as refusal:
        return ReadPlan(uncacheable=str(refusal))
    return ReadPlan(static=frozenset(static), narrow=tuple(narrow))


def _bind_scope(
    scope: Scope, catalog: Catalog, run: Runner, static: set[str], narrow: list[_Narrow]
) -> None:
    infos = [_relation(catalog, table.name, run) for table in scope.tables]

    def resolve(ref: ColumnRef) -> tuple[int, str] | None:
        if ref.qualifier is not None:
            hits = [i for i, t in enumerate(scope.tables) if ref.qualifier in (t.alias,)]
            if not hits:
                hits = [i for i, t in enumerate(scope.tables) if t.name[1] == ref.qualifier]
        else:
            hits = [i for i, info in enumerate(infos) if ref.name in info.order]
        return (hits[0], ref.name) if len(hits) == 1 else None

    for index, (table, info) in enumerate(zip(scope.tables, infos, strict=True)):
        if info.kind == "v":
            static |= _whole(catalog, table.name, run, set())
            continue
        candidates: list[_Candidate] = []
        if table.narrowable and info.kind in {"r", "p"}:
            candidates = _candidates(scope, index, resolve, infos)
        if candidates:
            narrow.append(_Narrow.of(info, tuple(candidates)))
        else:
            static.add(table_dependency(info.name, info.schema))


def _candidates(
    scope: Scope,
    index: int,
    resolve: Any,
    infos: list[TableInfo],
) -> list[_Candidate]:
    """The conditions that hold for every row of table ``index`` that reaches the result."""
    nullable = {i for i, t in enumerate(scope.tables) if t.nullable}

    def valid(origin: int, refs: Iterable[tuple[int, str] | None]) -> bool:
        if origin == index:
            return True
        if origin != -1:
            return False
        return all(r is not None and (r[0] == index or r[0] not in nullable) for r in refs)

    bound: dict[tuple[int, str], list[tuple[Value, ...]]] = {}
    for condition in scope.conditions:
        ref = resolve(condition.column)
        if ref is not None and valid(condition.origin, [ref]):
            bound.setdefault(ref, []).append(condition.values)
    parent: dict[tuple[int, str], tuple[int, str]] = {}

    def find(x: tuple[int, str]) -> tuple[int, str]:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for equality in scope.equalities:
        left, right = resolve(equality.left), resolve(equality.right)
        if left is None or right is None or not valid(equality.origin, [left, right]):
            continue
        left_family = family(infos[left[0]].columns.get(left[1], ""))
        right_family = family(infos[right[0]].columns.get(right[1], ""))
        if left_family and _compatible(left_family, right_family):
            parent[find(left)] = find(right)
    info = infos[index]
    out: list[_Candidate] = []
    for column in info.order:
        pg_type = info.columns.get(column, "")
        if not pg_type:
            continue
        own = (index, column)
        for values in bound.get(own, []):
            out.append(_Candidate(column, pg_type, values))
        root = find(own)
        for other, value_lists in bound.items():
            if other != own and find(other) == root:
                out.extend(_Candidate(column, pg_type, values) for values in value_lists)
    # primary-key conditions first: the fewest rows
    out.sort(key=lambda c: c.column not in info.pk)
    return out


# -- writes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteStep:
    """How to name the rows of one write."""

    write: Write
    info: TableInfo | None
    always: frozenset[str]  # invalidated whatever the rows (around the table)
    mode: str  # "unknown", "insert", "rows" (update/delete: read the rows first)
    preselect: str | None = None  # SELECT ... FOR UPDATE of the rows an update/delete writes
    readback: str | None = None  # SELECT of rows by primary key (``%s`` per key column)
    columns: tuple[str, ...] = ()  # the columns the pre-select and read-back return
    insert_columns: tuple[str, ...] = ()
    returning_all: bool = False  # RETURNING gives every narrowable column
    returning_pk: bool = False  # RETURNING gives the primary key


@dataclass(frozen=True)
class WritePlan:
    """What one write template invalidates."""

    steps: tuple[WriteStep, ...] = ()
    opaque: bool = False
    extra: frozenset[str] = field(default_factory=frozenset)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _around(info: TableInfo, write: Write, catalog: Catalog, run: Runner) -> set[str]:
    """What any write to ``info`` invalidates besides its own rows."""
    deps = {table_dependency(info.name, info.schema)}
    related: list[TableName] = [*info.ancestors, *info.descendants]
    if write.op in {"delete", "truncate", "unknown"}:
        related += info.on_delete
    if write.op in {"update", "unknown"}:
        related += info.on_update
    if write.op == "truncate" and write.cascade:
        related += info.referenced_by
    for name in related:
        deps |= unknown_rows_dependencies(name[1], name[0])
    if info.kind == "v":
        for base in info.bases:
            deps |= unknown_rows_dependencies(base[1], base[0])
            base_info = catalog.table(base, run)
            if base_info is not None and base_info.kind == "v":
                deps |= _around(base_info, Write("unknown", base), catalog, run)
    return deps


def bind_write(
    template: Template, catalog: Catalog, run: Runner, precise: bool, limit: int
) -> WritePlan:
    """The write plan of ``template``; ``precise``: read rows to name them (else every write
    invalidates its tables' unknown rows); ``limit``: most rows read before giving up."""
    steps: list[WriteStep] = []
    for write in template.writes:
        info = catalog.table(write.table, run)
        if info is None:
            always = frozenset(unknown_rows_dependencies(write.table[1], write.table[0]))
            steps.append(WriteStep(write, None, always, "unknown"))
            continue
        always = frozenset(_around(info, write, catalog, run))
        unknown = frozenset(always | unknown_rows_dependencies(info.name, info.schema))
        exact = precise and not info.triggers and info.kind in {"r", "p"}
        if not exact or write.op in {"truncate", "unknown"}:
            steps.append(WriteStep(write, info, unknown, "unknown"))
            continue
        narrowable = tuple(c for c in info.order if info.columns.get(c))
        columns = tuple(dict.fromkeys((*info.pk, *narrowable)))
        table_sql = f"{_quote(info.schema)}.{_quote(info.name)}"
        readback = None
        if info.pk:
            keys = ", ".join(_quote(c) for c in info.pk)
            readback = (
                f"SELECT {', '.join(_quote(c) for c in columns)} FROM {table_sql} "
                f"WHERE ({keys}) IN (%s)"
            )
        if write.op == "insert":
            returned = set(write.returning or ())
            every = "*" in returned
            steps.append(
                WriteStep(
                    write,
                    info,
                    always,
                    "insert",
                    readback=readback,
                    columns=columns,
                    insert_columns=write.columns if write.columns is not None else info.order,
                    returning_all=every or set(narrowable) <= returned,
                    returning_pk=bool(info.pk) and (every or set(info.pk) <= returned),
                )
            )
            continue
        if not write.simple or write.where is None:
            steps.append(WriteStep(write, info, unknown, "unknown"))
            continue
        alias = f" AS {_quote(write.alias)}" if write.alias else ""
        select_list = ", ".join(f"{_quote(write.alias or info.name)}.{_quote(c)}" for c in columns)
        where = write.where.replace("%", "%%")
        for marker in range(len(template.params)):
            where = where.replace(f"%%(p{marker})s", f"%(p{marker})s")
        preselect = (
            f"SELECT {select_list} FROM {table_sql}{alias} WHERE {where} "
            f"LIMIT {limit + 1} FOR UPDATE"
        )
        steps.append(
            WriteStep(
                write, info, always, "rows", preselect=preselect, readback=readback, columns=columns
            )
        )
    return WritePlan(steps=tuple(steps), opaque=template.opaque is not None)


def mapping_params(template: Template, params: Any) -> dict[str, Any]:
    """The parameters of a pre-select (named markers ``pN``) from the statement's ``params``."""
    return {f"p{i}": param(params, key) for i, key in enumerate(template.params)}


def image_value(ref: Value | None, params: Any, pg_type: str) -> Any:
    """The value a write stores in a column of ``pg_type`` from ``ref``, or UNKNOWN."""
    if ref is None:
        return UNKNOWN
    column_family = family(pg_type)
    if ref.cast is not None and not _compatible(ref.cast, column_family):
        return UNKNOWN
    if ref.expand:
        return UNKNOWN
    value = ref.literal if ref.param is None else param(params, ref.param)
    if isinstance(value, float) and column_family in _NUMBERS:
        return UNKNOWN  # PostgreSQL rounds it to the column's type
    return value


def merged(images: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """An old image with an UPDATE's assignments applied."""
    out = dict(images)
    out.update(updates)
    return out
