"""The tracker: what the integrations call around each statement and each transaction.

One :class:`Database` per database an integration instruments (a SQLAlchemy engine, a Django
alias) keeps the catalog and the bound plans; one :class:`ConnectionState` per DB-API
connection keeps the write log of its transaction, by savepoint.

Reads (inside a cached call only): the plan's dependencies are added to the call with
``add_dependencies``. A read is not cached (``mark_uncacheable``) when its transaction has
written something not committed yet (the rows read may never be committed), when it runs in a
``REPEATABLE READ``/``SERIALIZABLE`` transaction whose snapshot was taken before the cached
call started (it may predate an invalidation the call's store would not see), or when the plan
says so (unknown tables, user functions, SQL the analyser cannot read).

Writes: before an ``UPDATE``/``DELETE`` the rows it will write are read and locked with
``SELECT ... FOR UPDATE`` (same ``WHERE``), so the old images are exact; after it, the
statement's row count must match, and the new images are the old ones with the assignments
applied (or read back by primary key when an assignment is an expression). ``INSERT`` images
come from the statement's values, else from ``RETURNING``, else are read back by the returned
primary key. Anything that cannot be named this way invalidates the table's unknown rows.
The dependencies wait in the connection's log until the commit; a rollback (or a rollback to a
savepoint) drops them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..call._context import Frame, add_dependencies, mark_uncacheable
from .analyser import Template, analyse
from .catalog import Catalog, PostgresCatalog, Runner, TableInfo
from .hooks import CommittedWrites
from .plans import (
    UNKNOWN,
    ReadPlan,
    WritePlan,
    WriteStep,
    bind_read,
    bind_write,
    image_value,
    mapping_params,
)
from .scheme import row_dependencies, unknown_rows_dependencies

__all__ = ["ConnectionState", "Database", "PendingWrite"]

logger = logging.getLogger("depcache.db")

_SNAPSHOT_LEVELS = frozenset({"repeatable read", "serializable"})
_TEMPLATES = 4096
_ALL_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%%'
"""
_SQLITE_TABLES = "SELECT 'public', name FROM sqlite_master WHERE type = 'table'"


class ConnectionState:
    """The writes of one connection's current transaction, one level per open savepoint."""

    __slots__ = ("isolation", "levels", "snapshot")

    def __init__(self) -> None:
        self.levels: list[tuple[str | None, set[str]]] = [(None, set())]
        self.isolation: str | None = None  # set by SET TRANSACTION / BEGIN ISOLATION LEVEL
        self.snapshot: Frame | None = None  # the cached call that took the snapshot

    def add(self, deps: Iterable[str]) -> None:
        """Log ``deps`` in the innermost savepoint."""
        self.levels[-1][1].update(deps)

    def has_writes(self) -> bool:
        """Whether the transaction wrote anything not rolled back."""
        levels = self.levels
        if len(levels) == 1:
            return bool(levels[0][1])
        return any(deps for _, deps in levels)

    def savepoint(self, name: str | None) -> None:
        """A savepoint was set."""
        self.levels.append((name, set()))

    def _find(self, name: str | None) -> int | None:
        for index in range(len(self.levels) - 1, 0, -1):
            if self.levels[index][0] == name:
                return index
        return None

    def release(self, name: str | None) -> None:
        """A savepoint was released: its writes belong to the enclosing level."""
        index = self._find(name)
        if index is None:
            return
        for _, deps in self.levels[index:]:
            self.levels[index - 1][1].update(deps)
        del self.levels[index:]

    def rollback_to(self, name: str | None) -> None:
        """Rolled back to a savepoint: drop what was written since (the savepoint stays).
        An unknown savepoint drops nothing (more is invalidated, never less)."""
        index = self._find(name)
        if index is None:
            return
        self.levels[index][1].clear()
        del self.levels[index + 1 :]

    def take(self) -> set[str]:
        """Everything written, forgetting it (the transaction ended)."""
        deps: set[str] = set()
        for _, level in self.levels:
            deps |= level
        self.reset()
        return deps

    def reset(self) -> None:
        """Forget the transaction (rolled back, or ended)."""
        self.levels = [(None, set())]
        self.isolation = None
        self.snapshot = None


class PendingWrite:
    """A write statement between its execution's start and end."""

    __slots__ = ("old", "params", "plan", "template")

    def __init__(self, template: Template, plan: WritePlan, params: Any) -> None:
        self.template = template
        self.plan = plan
        self.params = params
        self.old: list[list[dict[str, Any]] | None] = []  # per step: pre-selected rows


def _within(frame: Frame | None, ancestor: Frame) -> bool:
    while frame is not None:
        if frame is ancestor:
            return True
        frame = frame.parent
    return False


class Database:
    """One instrumented database: its catalog, plans and prepared transactions.

    ``style`` is the driver's DB-API paramstyle; ``precise_writes`` reads the rows an
    ``UPDATE``/``DELETE`` writes to name them (one more round trip per statement; off: every
    write invalidates its tables' unknown rows); ``row_limit``: a write of more rows than this
    invalidates the table's unknown rows instead.
    """

    def __init__(
        self,
        name: str,
        catalog: Catalog,
        style: str,
        *,
        precise_writes: bool = True,
        row_limit: int = 1000,
    ) -> None:
        self.name = name
        self.catalog = catalog
        self.style = style
        self.precise_writes = precise_writes
        self.row_limit = row_limit
        self._templates: tuple[dict[str, Template], dict[str, Template]] = ({}, {})
        self._reads: tuple[dict[str, ReadPlan], dict[str, ReadPlan]] = ({}, {})
        self._writes: dict[tuple[str, bool], WritePlan] = {}
        self._prepared: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._settings_read = False
        self._warned: set[str] = set()

    # -- plans
    def template(self, sql: str, escaped: bool) -> Template:
        """The analysed template of ``sql`` (cached: one dictionary lookup once seen)."""
        known = self._templates[escaped]
        template = known.get(sql)
        if template is None:
            if len(known) >= _TEMPLATES:
                known.clear()  # SQL with inlined values: keep the memory bounded
            template = known[sql] = analyse(sql, self.style, escaped)
        return template

    def _settings(self, run: Runner) -> None:
        if not self._settings_read:
            self._settings_read = True
            if isinstance(self.catalog, PostgresCatalog):
                self.catalog.load_settings(run)

    def read_plan(self, sql: str, escaped: bool, template: Template, run: Runner) -> ReadPlan:
        """The read plan of ``sql`` (bound once, until a schema change)."""
        known = self._reads[escaped]
        plan = known.get(sql)
        if plan is None:
            self._settings(run)
            plan = known[sql] = bind_read(template, self.catalog, run)
        return plan

    def write_plan(self, sql: str, escaped: bool, template: Template, run: Runner) -> WritePlan:
        """The write plan of ``sql`` (bound once, until a schema change)."""
        key = (sql, escaped)
        plan = self._writes.get(key)
        if plan is None:
            plan = bind_write(template, self.catalog, run, self.precise_writes, self.row_limit)
            if not plan.opaque and any(
                self.catalog.function(f, run) == "volatile" for f in template.functions
            ):
                plan = WritePlan(steps=plan.steps, opaque=True)
            self._writes[key] = plan
            for step in plan.steps:
                self._warn_triggers(step.info)
        return plan

    def _warn_triggers(self, info: TableInfo | None) -> None:
        key = f"{info.schema}.{info.name}" if info is not None else ""
        if info is None or not info.triggers or key in self._warned:
            return
        self._warned.add(key)
        logger.warning(
            "depcache.db: table %s.%s has triggers or rules; writes to it invalidate all of "
            "it, and what its triggers write elsewhere is not seen (depcache cdc sees it)",
            info.schema,
            info.name,
        )

    def forget(self) -> None:
        """Drop the catalog and every plan (after a schema change)."""
        with self._lock:
            self.catalog.forget()
            for known in self._reads:
                known.clear()
            self._writes.clear()

    # -- reads
    def read(
        self,
        frame: Frame,
        template: Template,
        sql: str,
        escaped: bool,
        params: Any,
        run: Runner,
        state: ConnectionState,
        *,
        isolation: str | None,
        in_transaction: Callable[[], bool],
    ) -> None:
        """Record what a read inside ``frame`` depends on (or refuse to cache it)."""
        if state.has_writes():
            mark_uncacheable("read in a transaction with uncommitted writes")
            return
        plan = self.read_plan(sql, escaped, template, run)
        if plan.uncacheable is not None:
            mark_uncacheable(plan.uncacheable)
            return
        level = state.isolation or isolation or self.catalog.default_isolation
        if level in _SNAPSHOT_LEVELS:
            if not in_transaction():
                state.snapshot = frame
            elif not _within(state.snapshot, frame):
                mark_uncacheable(f"a {level} snapshot taken before the cached call started")
                return
        add_dependencies(plan.dependencies(params))

    # -- writes
    def before_write(
        self,
        template: Template,
        sql: str,
        escaped: bool,
        params: Any,
        many: bool,
        run: Runner,
        frame: Frame | None,
    ) -> PendingWrite:
        """Prepare to log a write: read the rows it will change. Call :meth:`after_write`
        once it ran."""
        if frame is not None:
            mark_uncacheable("the cached call wrote to the database")
        if template.schema_change:
            self.forget()
        plan = self.write_plan(sql, escaped, template, run)
        pending = PendingWrite(template, plan, params)
        sets: Sequence[Any] = params if many and isinstance(params, Sequence) else [params]
        for step in plan.steps:
            if step.mode != "rows" or step.preselect is None:
                pending.old.append(None)
                continue
            rows: list[dict[str, Any]] | None = []
            for one in sets:
                found = run(step.preselect, mapping_params(template, one))
                if rows is not None and len(found) <= self.row_limit:
                    rows.extend(dict(zip(step.columns, row, strict=True)) for row in found)
                else:
                    rows = None
            pending.old.append(rows)
        return pending

    def after_write(
        self,
        pending: PendingWrite,
        rowcount: int,
        returned: list[tuple[Any, ...]] | None,
        run: Runner,
        state: ConnectionState,
    ) -> None:
        """Log what the write changed, from the rows read before it and its results."""
        deps: set[str] = set()
        if pending.plan.opaque:
            deps |= self._everything(run)
        many = isinstance(pending.params, Sequence) and not isinstance(pending.params, str | bytes)
        for step, old in zip(pending.plan.steps, pending.old, strict=True):
            deps |= step.always
            info = step.info
            if info is None or step.mode == "unknown":
                deps |= step.always
                continue
            named = self._rows(step, old, pending, rowcount, returned, run, many)
            if named is None:
                deps |= unknown_rows_dependencies(info.name, info.schema)
            else:
                deps |= named
        state.add(deps)

    def _rows(
        self,
        step: WriteStep,
        old: list[dict[str, Any]] | None,
        pending: PendingWrite,
        rowcount: int,
        returned: list[tuple[Any, ...]] | None,
        run: Runner,
        many: bool,
    ) -> set[str] | None:
        """The dependencies of the rows one step wrote, or None when they cannot be named."""
        info = step.info
        assert info is not None
        types = info.columns
        if step.mode == "insert":
            images = self._insert_images(step, pending, returned, run, many)
            if images is None:
                return None
            deps: set[str] = set()
            for image in images:
                deps |= row_dependencies(info.name, None, image, types=types, schema=info.schema)
            return deps
        if old is None or rowcount != len(old):
            return None  # more rows than read, or not the ones read
        deps = set()
        if step.write.op == "delete":
            for image in old:
                deps |= row_dependencies(info.name, image, types=types, schema=info.schema)
            return deps
        new_images = self._updated(step, old, pending, run, many)
        if new_images is None:
            return None
        for before, after in zip(old, new_images, strict=True):
            deps |= row_dependencies(info.name, before, after, types=types, schema=info.schema)
        return deps

    def _updated(
        self,
        step: WriteStep,
        old: list[dict[str, Any]],
        pending: PendingWrite,
        run: Runner,
        many: bool,
    ) -> list[dict[str, Any]] | None:
        """The new images of updated rows: the old ones with the assignments applied, or read
        back by primary key (an assignment is an expression, or several parameter sets)."""
        info = step.info
        assert info is not None
        if not many:
            changes: dict[str, Any] = {}
            for column, ref in step.write.assignments:
                if column and not info.columns.get(column):
                    continue  # a column that narrows nothing
                value = image_value(ref, pending.params, info.columns.get(column, ""))
                if not column or value is UNKNOWN:
                    break
                changes[column] = value
            else:
                return [{**image, **changes} for image in old]
        return self._read_back(step, old, run)

    def _read_back(
        self, step: WriteStep, rows: list[dict[str, Any]], run: Runner
    ) -> list[dict[str, Any]] | None:
        info = step.info
        if info is None or not info.pk or step.readback is None or not rows:
            return None if rows else []
        keys = [tuple(row[c] for c in info.pk) for row in rows]
        placeholders = ", ".join("(" + ", ".join(["%s"] * len(info.pk)) + ")" for _ in keys)
        sql = step.readback.replace("IN (%s)", f"IN ({placeholders})")
        found = run(sql, [v for key in keys for v in key])
        images = [dict(zip(step.columns, row, strict=True)) for row in found]
        if len(images) != len(rows):
            return None
        by_key = {tuple(image[c] for c in info.pk): image for image in images}
        return [by_key[key] for key in keys] if all(k in by_key for k in keys) else None

    def _insert_images(
        self,
        step: WriteStep,
        pending: PendingWrite,
        returned: list[tuple[Any, ...]] | None,
        run: Runner,
        many: bool,
    ) -> list[dict[str, Any]] | None:
        info = step.info
        assert info is not None
        write = step.write
        narrowable = [c for c in info.order if info.columns.get(c)]
        sets: Sequence[Any] = pending.params if many else [pending.params]
        if write.rows is not None and set(narrowable) <= set(step.insert_columns):
            images: list[dict[str, Any]] = []
            for one in sets:
                for row in write.rows:
                    if len(row) != len(step.insert_columns):
                        images = []
                        break
                    image = {
                        c: image_value(ref, one, info.columns.get(c, ""))
                        for c, ref in zip(step.insert_columns, row, strict=True)
                        if info.columns.get(c)
                    }
                    if any(v is UNKNOWN for v in image.values()):
                        images = []
                        break
                    images.append(image)
                else:
                    continue
                break
            if images:
                return images
        if returned is None or many:
            return None
        names = self._returning_names(step)
        if names is None:
            return None
        rows = [dict(zip(names, row, strict=False)) for row in returned]
        if step.returning_all:
            return rows
        if step.returning_pk:
            return self._read_back(step, rows, run)
        return None

    @staticmethod
    def _returning_names(step: WriteStep) -> list[str] | None:
        info = step.info
        returning = step.write.returning
        if info is None or returning is None:
            return None
        names: list[str] = []
        for name in returning:
            if name == "*":
                names.extend(info.order)
            else:
                names.append(name or "?")  # an expression: a column that narrows nothing
        return names

    def _everything(self, run: Runner) -> set[str]:
        """Every table's unknown rows (an opaque statement may have written anything)."""
        sql = _ALL_TABLES if isinstance(self.catalog, PostgresCatalog) else _SQLITE_TABLES
        deps: set[str] = set()
        for schema, name in run(sql, []):
            deps |= unknown_rows_dependencies(str(name), str(schema))
        return deps

    # -- transactions
    def control(self, template: Template, state: ConnectionState) -> CommittedWrites | None:
        """Apply a transaction-control statement that succeeded; the writes to deliver when
        it committed them."""
        control = template.control
        if control is None:
            return None
        kind = control.kind
        if kind == "commit":
            return self.commit(state)
        if kind == "rollback":
            state.reset()
        elif kind == "savepoint":
            state.savepoint(control.name)
        elif kind == "release":
            state.release(control.name)
        elif kind == "rollback_to":
            state.rollback_to(control.name)
        elif kind == "isolation":
            state.isolation = control.name
        elif kind == "prepare" and control.name is not None:
            deps = state.take()
            if deps:
                with self._lock:
                    self._prepared[control.name] = deps
        elif kind == "commit_prepared" and control.name is not None:
            with self._lock:
                deps = self._prepared.pop(control.name, set())
            return CommittedWrites(self.name, frozenset(deps)) if deps else None
        elif kind == "rollback_prepared" and control.name is not None:
            with self._lock:
                self._prepared.pop(control.name, None)
        return None

    def commit(self, state: ConnectionState) -> CommittedWrites | None:
        """The connection committed: what to deliver (None when it wrote nothing)."""
        deps = state.take()
        return CommittedWrites(self.name, frozenset(deps)) if deps else None

    def rollback(self, state: ConnectionState) -> None:
        """The connection rolled back: forget its writes."""
        state.reset()
