"""SQLAlchemy: every statement of an instrumented engine tracked, every commit invalidating.

::

    import depcache.db.sqlalchemy
    depcache.db.sqlalchemy.instrument(engine)        # an Engine or an AsyncEngine, once

    @cache_with_deps(ttl=600)
    def user_page(user_id):                           # no add_dependency anywhere
        with Session(engine) as s:
            return render(s.get(User, user_id))

Hooks sit at the DB-API level: the dialect's ``do_execute``/``do_executemany``, where every
cursor execution of the engine passes, so the ORM, Core and ``text()`` share one analyser
(:mod:`depcache.db.analyser`), and no SQLAlchemy event listener is registered (any listener
makes SQLAlchemy dispatch its events on every statement, which alone costs more than our
hook). Reads inside a cached call add dependencies to it; outside one, a read costs one
ContextVar lookup and one dictionary lookup of its template.
Writes are logged per connection and invalidated after the DB-API ``commit()`` returns
(the dialect's ``do_commit``, so ORM sessions, ``engine.begin()`` and two-phase commits alike),
dropped on rollback and on rollback to a savepoint. See :mod:`depcache.db.tracking` for how the
rows written are named.

Databases: PostgreSQL through psycopg (3) or psycopg2, precisely; SQLite at table level (every
read depends on its tables, every write invalidates them). Others are refused.
"""

from __future__ import annotations

import collections
import contextlib
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.util import await_only

from ..call._context import Frame, current_frame
from .analyser import Template
from .catalog import Catalog, PostgresCatalog, SqliteCatalog
from .hooks import CommittedWrites, adeliver, deliver
from .tracking import ConnectionState, Database, PendingWrite

__all__ = ["database_of", "instrument"]

_STATE = "depcache.db.state"
_LINK = "depcache.db.link"
_PG_DRIVERS = frozenset({"psycopg", "psycopg2", "psycopg_async", "psycopg2cffi"})
_instrumented: weakref.WeakKeyDictionary[Engine, Database] = weakref.WeakKeyDictionary()


def _catalog(engine: Engine) -> tuple[Catalog, bool]:
    dialect = engine.dialect
    if dialect.name == "postgresql" and dialect.driver in _PG_DRIVERS:
        return PostgresCatalog(), True
    if dialect.name == "sqlite":
        return SqliteCatalog(), False
    raise ValueError(
        f"depcache.db.sqlalchemy supports PostgreSQL through psycopg or psycopg2 (precise "
        f"dependencies) and SQLite (table level); this engine is {dialect.name}+"
        f"{dialect.driver}. Declare dependencies by hand (add_dependency, invalidate) instead."
    )


def database_of(engine: Any) -> Database | None:
    """The tracker of an instrumented engine (or AsyncEngine), else None."""
    return _instrumented.get(getattr(engine, "sync_engine", engine))


def instrument(engine: Any, *, precise_writes: bool = True, row_limit: int = 1000) -> Database:
    """Track reads and writes of ``engine`` (an ``Engine`` or an ``AsyncEngine``).

    ``precise_writes``: name the rows an ``UPDATE``/``DELETE`` writes by reading them first
    (``SELECT ... FOR UPDATE``, one more round trip per statement); False invalidates the
    whole table on every write. ``row_limit``: a write of more rows than this invalidates the
    whole table. Instrumenting an engine twice returns the first tracker.

    Raises:
        TypeError: ``engine`` is not an Engine or AsyncEngine.
        ValueError: the database or driver is not supported.
    """
    sync_engine = getattr(engine, "sync_engine", engine)
    if not isinstance(sync_engine, Engine):
        raise TypeError(f"instrument() needs a SQLAlchemy Engine or AsyncEngine, got {engine!r}")
    existing = _instrumented.get(sync_engine)
    if existing is not None:
        return existing
    catalog, precise = _catalog(sync_engine)
    database = Database(
        sync_engine.url.render_as_string(hide_password=True),
        catalog,
        sync_engine.dialect.paramstyle,
        precise_writes=precise_writes and precise,
        row_limit=row_limit,
    )
    _instrumented[sync_engine] = database
    is_async = bool(getattr(sync_engine.dialect, "is_async", False))
    _wrap_execute(sync_engine, database, is_async)
    _wrap_dialect(sync_engine, database, is_async)
    return database


def _state(info: dict[Any, Any]) -> ConnectionState:
    state = info.get(_STATE)
    if state is None:
        state = info[_STATE] = ConnectionState()
    return state


class _Link:
    """What depcache keeps per DB-API connection, in its pool record's ``info`` (which
    SQLAlchemy empties when it replaces the connection): the transaction's write log, and a
    runner of catalog and row queries on the raw DB-API connection (so none of depcache's
    hooks see them; in an AsyncEngine's greenlet, through its adapter)."""

    __slots__ = ("dbapi", "driver", "in_transaction", "state")

    def __init__(self, fairy: Any, info: dict[Any, Any]) -> None:
        self.dbapi = fairy.dbapi_connection
        driver = self.driver = fairy.driver_connection
        self.state = _state(info)
        self.in_transaction: Callable[[], bool] = lambda: _in_transaction(driver)

    def __call__(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description is not None else []
        finally:
            cursor.close()


def _link(context: Any) -> _Link | None:
    """The link of the connection running ``context`` (None: the engine's first connect,
    before the pool has it)."""
    fairy = context.root_connection.connection
    try:
        info = fairy.info
    except NotImplementedError:
        return None
    link = info.get(_LINK)
    if link is None:
        link = info[_LINK] = _Link(fairy, info)
    return link  # type: ignore[no-any-return]


_LEVELS: dict[Any, str | None] = {None: None}


def _isolation(driver: Any) -> str | None:
    level = getattr(driver, "isolation_level", None)
    try:
        return _LEVELS[level]
    except (KeyError, TypeError):
        pass
    if isinstance(level, str):
        name: str | None = level.lower() or None
    else:
        name = str(getattr(level, "name", level)).lower().replace("_", " ")
    with contextlib.suppress(TypeError):  # an unhashable level: not remembered
        _LEVELS[level] = name
    return name


def _in_transaction(driver: Any) -> bool:
    info = getattr(driver, "info", None)
    status = getattr(info, "transaction_status", None)
    if status is not None:
        return int(status) != 0
    return bool(getattr(driver, "in_transaction", True))


def _autocommit(driver: Any) -> bool:
    if getattr(driver, "autocommit", False) is True:
        return True
    return getattr(driver, "isolation_level", "") is None and hasattr(driver, "in_transaction")


def _returned(cursor: Any, pending: PendingWrite) -> list[tuple[Any, ...]] | None:
    """The rows an INSERT ... RETURNING returned, left for SQLAlchemy to read."""
    if not any(s.mode == "insert" and s.write.returning for s in pending.plan.steps):
        return None
    rows = getattr(cursor, "_rows", None)
    if isinstance(rows, collections.deque):  # SQLAlchemy's asyncio adapter buffered them
        return [tuple(r) for r in rows]
    if getattr(cursor, "description", None) is None or getattr(cursor, "name", None):
        return None  # no rows, or a server-side cursor
    try:
        found = [tuple(r) for r in cursor.fetchall()]
        cursor.scroll(0, mode="absolute")
    except Exception:
        return None
    return found


def _read(
    database: Database,
    frame: Frame,
    template: Template,
    statement: str,
    parameters: Any,
    context: Any,
    escaped: bool,
) -> None:
    """Record what a statement that only reads depends on, in the current cached call."""
    link = _link(context)
    if link is not None:
        database.read(
            frame, template, statement, escaped, parameters, link, link.state,
            isolation=_isolation(link.driver), in_transaction=link.in_transaction,
        )  # fmt: skip


def _tracked(
    database: Database,
    is_async: bool,
    execute: Callable[[], Any],
    frame: Frame | None,
    template: Template,
    cursor: Any,
    statement: str,
    parameters: Any,
    context: Any,
    many: bool,
    escaped: bool,
) -> Any:
    """Run one statement of a connection, recording its reads and logging its writes."""
    link = _link(context)
    if link is None:
        return execute()
    state = link.state
    run = link
    if frame is not None and template.reads and not template.writes:
        database.read(
            frame, template, statement, escaped, parameters, run, state,
            isolation=_isolation(link.driver), in_transaction=link.in_transaction,
        )  # fmt: skip
    pending: PendingWrite | None = None
    if template.writes or template.opaque or template.functions or template.schema_change:
        pending = database.before_write(template, statement, escaped, parameters, many, run, frame)
    result = execute()
    writes: CommittedWrites | None = None
    if pending is not None and (pending.plan.steps or pending.plan.opaque):
        database.after_write(pending, int(cursor.rowcount), _returned(cursor, pending), run, state)
        if _autocommit(link.driver):
            writes = database.commit(state)
    if template.control is not None:
        writes = database.control(template, state) or writes
    if writes is not None:
        _deliver(writes, is_async)
    return result


def _deliver(writes: CommittedWrites, is_async: bool) -> None:
    if is_async:
        await_only(adeliver(writes))
    else:
        deliver(writes)


def _wrap_execute(engine: Engine, database: Database, is_async: bool) -> None:
    """Wrap the dialect's three execute methods: every statement of every connection passes
    there, the ORM's, Core's and ``text()``'s alike, with no SQLAlchemy event to dispatch."""
    dialect = engine.dialect
    template_of = database.template
    original_no_params = dialect.do_execute_no_params

    def with_parameters(original: Callable[..., Any], many: bool) -> Callable[..., Any]:
        """``do_execute`` (``many`` False) or ``do_executemany`` over ``original``."""

        def execute(cursor: Any, statement: str, parameters: Any, context: Any = None) -> Any:
            frame = current_frame()
            template = template_of(statement, True)
            if not template.acts or context is None:  # a read (or nothing): no write to log
                if frame is not None and template.reads and context is not None:
                    _read(database, frame, template, statement, parameters, context, True)
                return original(cursor, statement, parameters, context)
            return _tracked(
                database, is_async,
                lambda: original(cursor, statement, parameters, context),
                frame, template, cursor, statement, parameters, context, many, True,
            )  # fmt: skip

        return execute

    def do_execute_no_params(cursor: Any, statement: str, context: Any = None) -> Any:
        frame = current_frame()
        template = template_of(statement, False)
        if not template.acts or context is None:
            if frame is not None and template.reads and context is not None:
                _read(database, frame, template, statement, None, context, False)
            return original_no_params(cursor, statement, context)
        return _tracked(
            database, is_async,
            lambda: original_no_params(cursor, statement, context),
            frame, template, cursor, statement, None, context, False, False,
        )  # fmt: skip

    dialect.do_execute = with_parameters(dialect.do_execute, False)  # type: ignore[method-assign]
    dialect.do_executemany = with_parameters(dialect.do_executemany, True)  # type: ignore[method-assign]
    dialect.do_execute_no_params = do_execute_no_params  # type: ignore[method-assign]


def _wrap_dialect(engine: Engine, database: Database, is_async: bool) -> None:
    """Wrap the dialect's commit and rollback (per engine: each has its own dialect)."""
    dialect = engine.dialect

    def state_of(dbapi_connection: Any) -> ConnectionState | None:
        try:  # a pool's connection (the raw DB-API connection has no such dict)
            info = dbapi_connection.info
        except (AttributeError, NotImplementedError):  # the first connect's adapter
            return None
        return info.get(_STATE) if isinstance(info, dict) else None

    def ending(
        original: Callable[[Any], None], settle: Callable[[ConnectionState], object]
    ) -> Callable[..., None]:
        """``do_commit`` or ``do_rollback`` over ``original``: then ``settle`` the state."""

        def end(dbapi_connection: Any) -> None:
            try:
                original(dbapi_connection)
            finally:
                state = state_of(dbapi_connection)
                if state is not None:
                    settle(state)

        return end

    def commit(state: ConnectionState) -> None:
        # delivered even when the commit raised: it may have committed all the same
        writes = database.commit(state)
        if writes is not None:
            _deliver(writes, is_async)

    dialect.do_commit = ending(dialect.do_commit, commit)  # type: ignore[method-assign]
    dialect.do_rollback = ending(dialect.do_rollback, database.rollback)  # type: ignore[method-assign]
