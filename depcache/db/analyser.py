"""The statement analyser: SQL text → what it reads and what it writes, once per template.

:func:`analyse` parses a statement *template* (the SQL text a driver receives, placeholders and
all) with sqlglot's PostgreSQL dialect and returns a :class:`Template`, cached by its text: the
same SQL run with other parameters is never parsed again. Nothing here knows a column's type or
a table's schema; :mod:`depcache.db.binding` combines a template with the database catalog, and
the parameters of each execution, into dependencies.

Reads. Every ``SELECT`` (the statement, each subquery, each CTE body, each branch of a set
operation) is a :class:`Scope`: the tables of its ``FROM``/``JOIN`` list and the conditions
ANDed at the top of its ``WHERE`` and of its inner joins' ``ON``: ``col = value``,
``col IN (values)``, ``col = ANY(array parameter)``, an ``OR`` of equalities on one column, and
``col = col`` (for narrowing through a join). Rows of a table that fail such a condition never
reach the scope's result, so a read depends only on the rows the condition names. The right
side of a ``LEFT JOIN`` (the left of a ``RIGHT JOIN``) is narrowed by its own ``ON`` conditions
only; tables of a ``FULL JOIN`` are not narrowed. Anything else (ranges, ``LIKE``, functions on
columns, ``IS NULL``, ``OR`` across columns, ``HAVING``) narrows nothing: the table then counts
as a whole. Tables found anywhere else in the statement count as a whole too.

Writes. ``INSERT``/``UPDATE``/``DELETE`` anywhere in the statement (data-modifying CTEs
included), ``TRUNCATE``, ``MERGE``, ``COPY ... FROM``, ``REFRESH MATERIALIZED VIEW``, with
what the write side needs to name the rows written: an ``INSERT``'s values, an ``UPDATE``'s
assignments, a ``WHERE`` that only refers to the written table (to read the old rows first),
``RETURNING``. Transaction control (``COMMIT``, savepoints, ``PREPARE TRANSACTION``, ...) is
recognised for the write log.

What the analyser cannot understand is *opaque*: SQL it cannot parse, ``CALL``, ``DO``,
``EXECUTE``, schema changes. An opaque statement may read or write anything, so a cached call
running it is not stored, and a transaction running it invalidates every table at commit.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from .sqltext import MARKER_PREFIX, ParamKey, first_keyword, mark_placeholders

__all__ = [
    "Condition",
    "Control",
    "Equality",
    "Scope",
    "TableName",
    "TableRef",
    "Template",
    "Value",
    "Write",
    "analyse",
]

logger = logging.getLogger("depcache.db")

#: (schema or None, table): names as PostgreSQL folds them
TableName = tuple[str | None, str]

_CAST_FAMILIES = {
    exp.DataType.Type.SMALLINT: "int",
    exp.DataType.Type.INT: "int",
    exp.DataType.Type.BIGINT: "int",
    exp.DataType.Type.DECIMAL: "numeric",
    exp.DataType.Type.TEXT: "text",
    exp.DataType.Type.VARCHAR: "text",
    exp.DataType.Type.UUID: "uuid",
    exp.DataType.Type.BOOLEAN: "bool",
}

_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Value:
    """A value compared to a column: a parameter or a literal, maybe cast."""

    param: ParamKey | None  # None: ``literal`` is the value
    literal: Any = None
    cast: str | None = None  # family of an explicit cast (int, numeric, text, uuid, bool, other)
    expand: bool = False  # ``= ANY(param)``: the parameter is a list of values


@dataclass(frozen=True, slots=True)
class ColumnRef:
    """A column as written: its qualifier (an alias or table name, folded) and name."""

    qualifier: str | None
    name: str


@dataclass(frozen=True, slots=True)
class Condition:
    """``column = value`` or ``column IN (values)``. ``origin`` is -1 for a condition of the
    whole scope (``WHERE``, inner ``ON``), else the index of the outer-joined table whose ``ON``
    it belongs to."""

    column: ColumnRef
    values: tuple[Value, ...]
    origin: int = -1


@dataclass(frozen=True, slots=True)
class Equality:
    """``left = right`` between two columns (see :class:`Condition` for ``origin``)."""

    left: ColumnRef
    right: ColumnRef
    origin: int = -1


@dataclass(frozen=True, slots=True)
class TableRef:
    """A table in a scope's ``FROM`` list."""

    name: TableName
    alias: str  # how columns qualify it
    nullable: bool = False  # the outer side of an outer join: only its ON narrows it
    narrowable: bool = True  # False in a FULL JOIN


@dataclass(frozen=True, slots=True)
class Scope:
    """One ``SELECT``: its tables and the conditions that hold for the rows it reads."""

    tables: tuple[TableRef, ...]
    conditions: tuple[Condition, ...]
    equalities: tuple[Equality, ...]


@dataclass(frozen=True, slots=True)
class Write:
    """One write. ``op`` is insert, update, delete, truncate or ``unknown`` (a write whose rows
    cannot be named: ``MERGE``, ``COPY``, ``REFRESH``, ``INSERT ... SELECT``, an upsert)."""

    op: str
    table: TableName
    alias: str | None = None
    columns: tuple[str, ...] | None = None  # INSERT column list (None: all, in table order)
    rows: tuple[tuple[Value | None, ...], ...] | None = None  # INSERT VALUES (None: not values)
    on_conflict: str | None = None  # "nothing" or "update"
    assignments: tuple[tuple[str, Value | None], ...] = ()  # UPDATE SET (None: an expression)
    where: str | None = None  # pre-select WHERE (PostgreSQL, markers ``%(pN)s``); see simple
    simple: bool = False  # the WHERE refers to the written table, constants and parameters only
    returning: tuple[str | None, ...] | None = None  # RETURNING columns, ("*",) for all
    cascade: bool = False  # TRUNCATE ... CASCADE


@dataclass(frozen=True, slots=True)
class Control:
    """Transaction control: ``kind`` is begin, commit, rollback, savepoint, release,
    rollback_to, prepare, commit_prepared, rollback_prepared or isolation."""

    kind: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """What one statement template reads and writes."""

    params: tuple[ParamKey, ...] = ()  # marker N stands for params[N]
    scopes: tuple[Scope, ...] = ()
    whole_tables: frozenset[TableName] = frozenset()  # read, not narrowable
    functions: frozenset[str] = frozenset()  # calls sqlglot does not know (maybe user-defined)
    writes: tuple[Write, ...] = ()
    control: Control | None = None
    opaque: str | None = None  # why the statement may read or write anything
    schema_change: bool = False  # DDL: the catalog must be read again
    uncacheable: str | None = None  # why a read by it must not be cached
    tables: frozenset[TableName] = field(default=frozenset())  # every table named
    #: whether it matters outside a cached call (a write, transaction control, ...)
    acts: bool = field(init=False, default=False)
    #: whether running it inside a cached call records anything
    reads: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        acts = bool(
            self.writes or self.control or self.opaque or self.functions or self.schema_change
        )
        object.__setattr__(self, "acts", acts)
        reads = bool(self.scopes or self.whole_tables or self.functions or self.opaque)
        object.__setattr__(self, "reads", reads)


# -- entry point --------------------------------------------------------------------------------

_NO_EFFECT = frozenset(
    {
        "SHOW",
        "RESET",
        "DISCARD",
        "LISTEN",
        "UNLISTEN",
        "NOTIFY",
        "DEALLOCATE",
        "FETCH",
        "MOVE",
        "CLOSE",
        "VACUUM",
        "ANALYZE",
        "ANALYSE",
        "CHECKPOINT",
        "LOCK",
        "CLUSTER",
        "REINDEX",
        "LOAD",
        "GRANT",
        "REVOKE",
        "COMMENT",
        "SECURITY",
        "PRAGMA",
    }
)
_PARSED = frozenset(
    {
        "SELECT",
        "WITH",
        "VALUES",
        "TABLE",
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "TRUNCATE",
        "REPLACE",
    }
)
_SCHEMA = frozenset({"CREATE", "ALTER", "DROP"})
_QUOTED_NAME = re.compile(r"'((?:[^']|'')*)'")
_WORDS = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*|\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*'")


@functools.lru_cache(maxsize=_CACHE_SIZE)
def analyse(sql: str, style: str = "pyformat", escaped: bool = True) -> Template:  # noqa: PLR0911, PLR0912  # one return per statement kind
    """The :class:`Template` of ``sql`` sent with parameters of DB-API ``style`` (``escaped``:
    parameters are sent, so ``%%`` means ``%`` in the format styles). Cached per argument
    triple (the last 4096 templates); never raises for bad SQL (that is an opaque template).

    Raises:
        ValueError: ``style`` is not a DB-API paramstyle.
    """
    marked, keys = mark_placeholders(sql, style, escaped)
    keyword = first_keyword(marked)
    control = _control(keyword, marked)
    if control is not None:
        return Template(params=keys, control=control)
    if keyword in _NO_EFFECT or not keyword:
        return Template(params=keys)
    if keyword in {"SET", "BEGIN", "START"}:
        return Template(params=keys, control=_isolation(marked))
    if keyword == "PREPARE":  # a named prepared statement; EXECUTE runs it
        return Template(params=keys)
    if keyword == "EXPLAIN":
        words = [w.upper() for w in _WORDS.findall(marked)[:4]]
        if "ANALYZE" in words or "ANALYSE" in words:
            return _opaque(sql, keys, "EXPLAIN ANALYZE runs the statement")
        return Template(params=keys)
    if keyword == "REFRESH":
        return _refresh(sql, marked, keys)
    if keyword == "COPY":
        return _copy(sql, marked, keys)
    if keyword in _SCHEMA:
        words = [w.upper() for w in _WORDS.findall(marked)[:6]]
        if keyword != "CREATE" or "REPLACE" in words or "RULE" in words or "TRIGGER" in words:
            return _opaque(sql, keys, f"schema change ({keyword})", schema_change=True)
        return Template(params=keys, schema_change=True)
    if keyword not in _PARSED:
        return _opaque(sql, keys, f"{keyword} statements are not analysed")
    try:
        trees = [t for t in sqlglot.parse(marked, dialect="postgres") if t is not None]
    except (SqlglotError, RecursionError, ValueError) as exc:
        return _opaque(sql, keys, f"unparseable: {type(exc).__name__}")
    if len(trees) != 1 or isinstance(trees[0], exp.Command):
        return _opaque(sql, keys, "not one statement the parser understands")
    return _Walker(keys).template(trees[0])  # type: ignore[arg-type]


def _opaque(sql: str, keys: tuple[ParamKey, ...], why: str, **fields: Any) -> Template:
    if fields.get("schema_change"):
        logger.info(
            "depcache.db: %s: the catalog is read again, and committing it invalidates every "
            "table: %.200s",
            why,
            sql,
        )
    else:
        logger.warning(
            "depcache.db: cannot analyse a statement (%s); it may read or write anything, so "
            "results reading it are not cached and committing it invalidates every table: "
            "%.200s",
            why,
            sql,
        )
    return Template(params=keys, opaque=why, uncacheable=why, **fields)


def _unquote_name(text: str) -> str:
    return text[1:-1].replace("''", "'")


def _control(keyword: str, sql: str) -> Control | None:  # noqa: PLR0911  # one return per control statement
    words = [w.upper() if not w.startswith(("'", '"')) else w for w in _WORDS.findall(sql)[:5]]
    second = words[1] if len(words) > 1 else ""
    if keyword in {"COMMIT", "END"}:
        if second == "PREPARED":
            return _named_control("commit_prepared", sql)
        return Control("commit")
    if keyword in {"ROLLBACK", "ABORT"}:
        if second == "PREPARED":
            return _named_control("rollback_prepared", sql)
        if second == "TO":
            return Control("rollback_to", _identifier(words[-1]))
        return Control("rollback")
    if keyword == "SAVEPOINT":
        return Control("savepoint", _identifier(second))
    if keyword == "RELEASE":
        return Control("release", _identifier(words[-1]))
    if keyword == "PREPARE" and second == "TRANSACTION":
        return _named_control("prepare", sql)
    return None


def _identifier(word: str) -> str:
    if word.startswith('"'):
        return word[1:-1].replace('""', '"')
    return word.lower()


def _named_control(kind: str, sql: str) -> Control:
    match = _QUOTED_NAME.search(sql)
    return Control(kind, match.group(1).replace("''", "'") if match else None)


def _isolation(sql: str) -> Control | None:
    text = " ".join(sql.upper().split())
    for level in ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED"):
        if f"ISOLATION LEVEL {level}" in text:
            return Control("isolation", level.lower())
    return Control("begin") if text.startswith(("BEGIN", "START")) else None


def _name_of(words: list[str]) -> TableName:
    parts = [_identifier(w) for w in words]
    return (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])


def _qualified_after(sql: str, skip: set[str]) -> TableName | None:
    tokens = re.findall(r"\"(?:[^\"]|\"\")*\"|[A-Za-z_][A-Za-z0-9_$]*|\.", sql)
    words = [t for t in tokens if t.upper() not in skip]
    if not words:
        return None
    name = [words[0]]
    if len(words) > 2 and words[1] == ".":
        name.append(words[2])
    return _name_of(name)


def _refresh(sql: str, marked: str, keys: tuple[ParamKey, ...]) -> Template:
    name = _qualified_after(marked, {"REFRESH", "MATERIALIZED", "VIEW", "CONCURRENTLY"})
    if name is None:
        return _opaque(sql, keys, "REFRESH of an unknown view")
    return Template(params=keys, writes=(Write("unknown", name),), tables=frozenset({name}))


def _copy(sql: str, marked: str, keys: tuple[ParamKey, ...]) -> Template:
    upper = " ".join(marked.upper().split())
    if upper.startswith("COPY (") or (" TO " in upper and " FROM " not in upper):
        return Template(params=keys, uncacheable="COPY ... TO is not tracked")
    name = _qualified_after(marked, {"COPY"})
    if name is None or " FROM " not in upper:
        return _opaque(sql, keys, "COPY of an unknown table")
    return Template(params=keys, writes=(Write("unknown", name),), tables=frozenset({name}))


# -- the walk over a parsed statement -----------------------------------------------------------


def _fold(identifier: exp.Expression | None) -> str | None:
    if identifier is None:
        return None
    if isinstance(identifier, exp.Identifier):
        text = str(identifier.this)
        return text if identifier.quoted else text.lower()
    return str(identifier.name).lower() if identifier.name else None


def _table_name(table: exp.Table) -> TableName | None:
    if not isinstance(table.this, exp.Identifier):
        return None  # a table function
    if table.args.get("catalog") is not None:
        return None  # database.schema.table: not a table of this database as such
    return (_fold(table.args.get("db")), _fold(table.this) or "")


def _alias_of(node: exp.Expression) -> str | None:
    alias = node.args.get("alias")
    if isinstance(alias, exp.TableAlias):
        return _fold(alias.this)
    return None


def _column(node: exp.Expression) -> ColumnRef | None:
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.Column) or not isinstance(node.this, exp.Identifier):
        return None
    if node.args.get("db") is not None:  # schema.table.column: qualify by table name
        return ColumnRef(_fold(node.args.get("table")), _fold(node.this) or "")
    return ColumnRef(_fold(node.args.get("table")), _fold(node.this) or "")


def _cast_family(to: exp.Expression | None) -> str:
    if isinstance(to, exp.DataType) and not to.expressions:
        return _CAST_FAMILIES.get(to.this, "other")
    return "other"


def _value(  # noqa: PLR0911  # one return per value form
    node: exp.Expression, keys: tuple[ParamKey, ...], cast: str | None = None
) -> Value | None:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Cast):
        family = _cast_family(node.args.get("to"))
        if cast is not None and cast != family:
            return None
        return _value(node.this, keys, family)
    if isinstance(node, exp.Placeholder):
        key = _marker(node, keys)
        return None if key is None else Value(key, cast=cast)
    if isinstance(node, exp.Literal):
        return (
            Value(None, str(node.this), cast)
            if node.is_string
            else Value(None, _number(str(node.this)), cast)
        )
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return Value(None, _number("-" + str(node.this.this)), cast)
    if isinstance(node, exp.Boolean):
        return Value(None, bool(node.this), cast)
    return None


def _number(text: str) -> Any:
    from decimal import Decimal, InvalidOperation  # noqa: PLC0415  # rare path

    try:
        return int(text)
    except ValueError:
        try:
            return Decimal(text)
        except InvalidOperation:
            return text


def _marker(node: exp.Placeholder, keys: tuple[ParamKey, ...]) -> ParamKey | None:
    name = _fold(node.this) if isinstance(node.this, exp.Identifier) else node.name
    if not name or not name.startswith(MARKER_PREFIX) or not name[len(MARKER_PREFIX) :].isdigit():
        return None
    index = int(name[len(MARKER_PREFIX) :])
    return keys[index] if index < len(keys) else None


def _conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    if node is None:
        return []
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _disjuncts(node: exp.Expression) -> list[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Or):
        return _disjuncts(node.this) + _disjuncts(node.expression)
    return [node]


class _Walker:
    """Builds the template of one parsed statement."""

    def __init__(self, keys: tuple[ParamKey, ...]) -> None:
        self.keys = keys
        self.scopes: list[Scope] = []
        self.scoped: set[int] = set()  # ids of Table nodes a scope accounted for
        self.writes: list[Write] = []
        self.written: set[int] = set()
        self.uncacheable: str | None = None

    def template(self, tree: exp.Expression) -> Template:
        ctes = self._cte_visibility(tree)
        for select in tree.find_all(exp.Select):
            self._scope(select, ctes)
        for node in tree.find_all(exp.Insert, exp.Update, exp.Delete, exp.TruncateTable, exp.Merge):
            self._write(node, ctes)
        functions = frozenset(
            _fold(f.this) if isinstance(f.this, exp.Identifier) else str(f.name).lower()
            for f in tree.find_all(exp.Anonymous)
        )
        tables: set[TableName] = set()
        whole: set[TableName] = set()
        for table in tree.find_all(exp.Table):
            name = _table_name(table)
            if name is None or self._is_cte(table, name, ctes):
                continue
            tables.add(name)
            if id(table) not in self.scoped and id(table) not in self.written:
                whole.add(name)
        if any(
            isinstance(w, exp.With) and w.args.get("recursive") for w in tree.find_all(exp.With)
        ):
            # a recursive CTE joins its own rows: narrow nothing
            whole |= {t.name for s in self.scopes for t in s.tables}
            self.scopes.clear()
        return Template(
            params=self.keys,
            scopes=tuple(self.scopes),
            whole_tables=frozenset(whole),
            functions=frozenset(f for f in functions if f),
            writes=tuple(self.writes),
            uncacheable=self.uncacheable,
            tables=frozenset(tables),
        )

    # -- CTE names: which WITH names a table node may refer to
    @staticmethod
    def _cte_visibility(tree: exp.Expression) -> dict[int, list[tuple[exp.Expression, str]]]:
        """For each WITH node id: its CTEs as (node, name) in order."""
        out: dict[int, list[tuple[exp.Expression, str]]] = {}
        for with_ in tree.find_all(exp.With):
            out[id(with_)] = [
                (cte, _fold(cte.args["alias"].this) or "") for cte in with_.expressions
            ]
        return out

    @staticmethod
    def _is_cte(
        table: exp.Table, name: TableName, ctes: dict[int, list[tuple[exp.Expression, str]]]
    ) -> bool:
        if name[0] is not None or not ctes:
            return False
        child: exp.Expression = table
        node = table.parent
        while node is not None:
            with_ = node.args.get("with_") or node.args.get("with")
            if isinstance(with_, exp.With) and id(with_) in ctes:
                entries = ctes[id(with_)]
                recursive = bool(with_.args.get("recursive"))
                if child is with_:  # inside a CTE body: earlier CTEs (all when recursive)
                    body = next((i for i, (cte, _) in enumerate(entries) if _within(table, cte)), 0)
                    visible = entries if recursive else entries[:body]
                else:
                    visible = entries
                if any(cte_name == name[1] for _, cte_name in visible):
                    return True
            child, node = node, node.parent  # type: ignore[assignment]
        return False

    # -- reads
    def _scope(self, select: exp.Select, ctes: dict[int, list[tuple[exp.Expression, str]]]) -> None:  # noqa: PLR0912  # the join kinds
        from_ = select.args.get("from_") or select.args.get("from")
        joins = list(select.args.get("joins") or [])
        sources: list[exp.Expression] = [from_.this] if isinstance(from_, exp.From) else []
        sides = [""] * len(sources)
        for join in joins:
            sources.append(join.this)
            sides.append((join.args.get("side") or "").upper())
        # nullable: the right side of a LEFT JOIN, what precedes a RIGHT JOIN; a FULL JOIN
        # makes both sides unnarrowable
        nullable = [False] * len(sources)
        narrowable = [True] * len(sources)
        for index, side in enumerate(sides):
            if side == "LEFT":
                nullable[index] = True
            elif side == "RIGHT":
                nullable[:index] = [True] * index
            elif side == "FULL":
                narrowable[: index + 1] = [False] * (index + 1)
        tables: list[TableRef] = []
        conditions: list[Condition] = []
        equalities: list[Equality] = []
        for index, node in enumerate(sources):
            position = -1
            if isinstance(node, exp.Table):
                name = _table_name(node)
                if name is not None and not self._is_cte(node, name, ctes):
                    alias = _alias_of(node) or name[1]
                    tables.append(TableRef(name, alias, nullable[index], narrowable[index]))
                    self.scoped.add(id(node))
                    position = len(tables) - 1
            if index == 0:
                continue
            on = joins[index - 1].args.get("on")
            if sides[index] == "":
                self._conditions(on, -1, conditions, equalities)  # an inner join: global
            elif sides[index] == "LEFT" and position >= 0:
                self._conditions(on, position, conditions, equalities)  # narrows its table only
        if not tables:
            return
        where = select.args.get("where")
        if isinstance(where, exp.Where):
            self._conditions(where.this, -1, conditions, equalities)
        self.scopes.append(Scope(tuple(tables), tuple(conditions), tuple(equalities)))

    def _conditions(
        self,
        node: exp.Expression | None,
        origin: int,
        conditions: list[Condition],
        equalities: list[Equality],
    ) -> None:
        for conjunct in _conjuncts(node):
            found = self._condition(conjunct, origin)
            if isinstance(found, Condition):
                conditions.append(found)
            elif isinstance(found, Equality):
                equalities.append(found)

    def _condition(self, node: exp.Expression, origin: int) -> Condition | Equality | None:  # noqa: PLR0911  # one return per condition form
        disjuncts = _disjuncts(node)
        if len(disjuncts) > 1:
            parts = [self._condition(d, origin) for d in disjuncts]
            if all(isinstance(p, Condition) for p in parts):
                columns = {p.column for p in parts if isinstance(p, Condition)}
                if len(columns) == 1:
                    values = tuple(v for p in parts if isinstance(p, Condition) for v in p.values)
                    return Condition(columns.pop(), values, origin)
            return None
        node = disjuncts[0]
        if isinstance(node, exp.EQ):
            left, right = node.this, node.expression
            left_col, right_col = _column(left), _column(right)
            if left_col is not None and right_col is not None:
                return Equality(left_col, right_col, origin)
            column, other = (left_col, right) if left_col is not None else (right_col, left)
            if column is None:
                return None
            while isinstance(other, exp.Paren):
                other = other.this
            if isinstance(other, exp.Any):
                return self._any(column, other, origin)
            value = _value(other, self.keys)
            return None if value is None else Condition(column, (value,), origin)
        if isinstance(node, exp.In) and not node.args.get("query") and not node.args.get("unnest"):
            column = _column(node.this)
            if column is None or not node.expressions:
                return None
            found = [_value(v, self.keys) for v in node.expressions]
            if any(v is None for v in found):
                return None
            return Condition(column, tuple(v for v in found if v is not None), origin)
        return None

    def _any(self, column: ColumnRef, node: exp.Any, origin: int) -> Condition | None:
        inner = node.this
        while isinstance(inner, exp.Paren):
            inner = inner.this
        if isinstance(inner, exp.Array):
            values = [_value(v, self.keys) for v in inner.expressions]
            if not values or any(v is None for v in values):
                return None
            return Condition(column, tuple(v for v in values if v is not None), origin)
        cast: str | None = None
        if isinstance(inner, exp.Cast):
            to = inner.args.get("to")
            if not (isinstance(to, exp.DataType) and to.this == exp.DataType.Type.ARRAY):
                return None
            element = to.expressions[0] if to.expressions else None
            cast = _cast_family(element)
            inner = inner.this
        if isinstance(inner, exp.Placeholder):
            key = _marker(inner, self.keys)
            if key is not None:
                return Condition(column, (Value(key, cast=cast, expand=True),), origin)
        return None

    # -- writes
    def _write(
        self, node: exp.Expression, ctes: dict[int, list[tuple[exp.Expression, str]]]
    ) -> None:
        if isinstance(node, exp.TruncateTable):
            for table in node.expressions:
                if isinstance(table, exp.Table) and (name := _table_name(table)) is not None:
                    self.written.add(id(table))
                    cascade = str(node.args.get("option") or "").upper() == "CASCADE"
                    self.writes.append(Write("truncate", name, cascade=cascade))
            return
        target = node.this
        if isinstance(target, exp.Schema):  # INSERT INTO t (a, b)
            target = target.this
        if not isinstance(target, exp.Table):
            self.uncacheable = self.uncacheable or "a write to something other than a table"
            return
        name = _table_name(target)
        if name is None:
            return
        self.written.add(id(target))
        alias = _alias_of(target)
        returning = self._returning(node.args.get("returning"))
        if isinstance(node, exp.Insert):
            self.writes.append(self._insert(node, name, returning))
        elif isinstance(node, exp.Update):
            simple = not node.args.get("from_") and not node.args.get("from")
            where, simple = self._where(node, name, alias, simple)
            assignments = tuple(self._assignment(a) for a in node.expressions)
            self.writes.append(
                Write(
                    "update",
                    name,
                    alias,
                    assignments=assignments,
                    where=where,
                    simple=simple,
                    returning=returning,
                )
            )
        elif isinstance(node, exp.Delete):
            simple = not node.args.get("using")
            where, simple = self._where(node, name, alias, simple)
            self.writes.append(
                Write("delete", name, alias, where=where, simple=simple, returning=returning)
            )
        else:
            self.writes.append(Write("unknown", name))

    def _insert(self, node: exp.Insert, name: TableName, returning: Any) -> Write:
        schema = node.this
        columns: tuple[str, ...] | None = None
        if isinstance(schema, exp.Schema):
            cols = [
                _fold(c) if isinstance(c, exp.Identifier) else _fold(c.this)
                for c in schema.expressions
            ]
            if any(c is None for c in cols):
                return Write("unknown", name)
            columns = tuple(c for c in cols if c is not None)
        conflict = node.args.get("conflict")
        on_conflict = None
        if isinstance(conflict, exp.OnConflict):
            on_conflict = (
                "nothing"
                if conflict.args.get("action") is None and not conflict.args.get("expressions")
                else "update"
            )
            if conflict.args.get("duplicate") or conflict.args.get("expressions"):
                on_conflict = "update"
            action = conflict.args.get("action")
            if action is not None and "NOTHING" in str(action).upper():
                on_conflict = "nothing"
        if on_conflict == "update":
            return Write("unknown", name)
        source = node.expression
        if node.args.get("default"):
            return Write(
                "insert", name, columns=(), rows=((),), returning=returning, on_conflict=on_conflict
            )
        if not isinstance(source, exp.Values):
            return Write("unknown", name)
        rows: list[tuple[Value | None, ...]] = []
        for row in source.expressions:
            items = row.expressions if isinstance(row, exp.Tuple) else [row]
            rows.append(tuple(_value(item, self.keys) for item in items))
        return Write(
            "insert",
            name,
            columns=columns,
            rows=tuple(rows),
            on_conflict=on_conflict,
            returning=returning,
        )

    def _assignment(self, node: exp.Expression) -> tuple[str, Value | None]:
        if isinstance(node, exp.EQ):
            column = _column(node.this)
            if column is not None:
                return column.name, _value(node.expression, self.keys)
        return "", None  # a tuple assignment: unknown columns

    def _returning(self, node: Any) -> tuple[str | None, ...] | None:
        if not isinstance(node, exp.Returning):
            return None
        names: list[str | None] = []
        for item in node.expressions:
            if isinstance(item, exp.Star):
                names.append("*")
                continue
            column = _column(item)
            names.append(None if column is None else column.name)
        return tuple(names)

    def _where(
        self, node: exp.Expression, name: TableName, alias: str | None, simple: bool
    ) -> tuple[str | None, bool]:
        where = node.args.get("where")
        if where is None:
            return "TRUE", simple
        if not isinstance(where, exp.Where):
            return None, False
        allowed = {alias or name[1]}
        for sub in where.this.walk():
            if isinstance(sub, exp.Select | exp.Subquery | exp.Exists | exp.Anonymous | exp.Rand):
                return None, False
            if isinstance(sub, exp.Column) and _fold(sub.args.get("table")) not in (None, *allowed):
                return None, False
        try:
            return where.this.sql(dialect="postgres"), simple
        except SqlglotError:
            return None, False


def _within(node: exp.Expression, ancestor: exp.Expression) -> bool:
    seen: exp.Expression | None = node
    while seen is not None:
        if seen is ancestor:
            return True
        seen = seen.parent  # type: ignore[assignment]
    return False
