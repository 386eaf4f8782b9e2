"""Hooking Django's database connections: one execute wrapper per connection, per thread.

Django keeps a ``DatabaseWrapper`` per alias and per thread; each gets, when it connects
(``connection_created``), the execute wrapper and wrapped ``_commit``/``_rollback``. The
:class:`~depcache.db.tracking.Database` of an alias (catalog, plans) is shared by its threads;
the write log (:class:`~depcache.db.tracking.ConnectionState`) is per connection.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.signals import connection_created

from ...call._context import current_frame
from ..catalog import Catalog, PostgresCatalog, Runner, SqliteCatalog
from ..hooks import CommittedWrites, deliver
from ..tracking import ConnectionState, Database

__all__ = ["database_of", "install", "instrument_connection"]

_STATE = "_depcache_state"
_HOOKED = "_depcache_hooked"
_databases: dict[str, Database] = {}
_lock = threading.Lock()


def _options() -> tuple[set[str] | None, bool, int]:
    tracking = getattr(settings, "DEPCACHE_DATABASE_TRACKING", {}) or {}
    if not isinstance(tracking, Mapping):
        raise ImproperlyConfigured("DEPCACHE_DATABASE_TRACKING must be a dict")
    aliases = tracking.get("DATABASES")
    return (
        None if aliases is None else {str(a) for a in aliases},
        bool(tracking.get("PRECISE_WRITES", True)),
        int(tracking.get("ROW_LIMIT", 1000)),
    )


def database_of(alias: str) -> Database | None:
    """The tracker of a Django database alias (None before it connected or when untracked)."""
    return _databases.get(alias)


def _database(connection: Any) -> Database | None:
    alias = connection.alias
    existing = _databases.get(alias)
    if existing is not None:
        return existing
    aliases, precise, limit = _options()
    if aliases is not None and alias not in aliases:
        return None
    catalog: Catalog
    if connection.vendor == "postgresql":
        catalog, exact = PostgresCatalog(), True
    elif connection.vendor == "sqlite":
        catalog, exact = SqliteCatalog(), False
    else:
        raise ImproperlyConfigured(
            f"depcache.db.django tracks PostgreSQL (precisely) and SQLite (table level); "
            f"database {alias!r} is {connection.vendor}. List the aliases to track in "
            "DEPCACHE_DATABASE_TRACKING['DATABASES'] and declare this one's dependencies by hand."
        )
    style = "pyformat"  # Django's SQL: %s and %(name)s (its SQLite backend converts them)
    with _lock:
        return _databases.setdefault(
            alias,
            Database(alias, catalog, style, precise_writes=precise and exact, row_limit=limit),
        )


def _runner(connection: Any) -> Runner:
    def run(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[tuple[Any, ...]]:
        cursor = connection.connection.cursor()  # the driver's: no wrappers, no debug log
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description is not None else []
        finally:
            cursor.close()

    return run


def _state(connection: Any) -> ConnectionState:
    state = getattr(connection, _STATE, None)
    if state is None:
        state = ConnectionState()
        setattr(connection, _STATE, state)
    return state


def _driver_isolation(raw: Any) -> str | None:
    level = getattr(raw, "isolation_level", None)
    if level is None:
        return None
    if isinstance(level, str):
        return level.lower() or None
    name = getattr(level, "name", None)
    if isinstance(name, str):
        return name.lower().replace("_", " ")
    return {1: "read committed", 2: "repeatable read", 3: "serializable"}.get(int(level))


def _in_transaction(raw: Any) -> bool:
    info = getattr(raw, "info", None)
    status = getattr(info, "transaction_status", None)
    if status is None and hasattr(raw, "get_transaction_status"):  # psycopg2
        status = raw.get_transaction_status()
    if status is not None:
        return int(status) != 0
    return bool(getattr(raw, "in_transaction", True))


def _autocommit(connection: Any) -> bool:
    """Whether the statement just run committed by itself (Django's view: its SQLite backend
    runs the driver in autocommit and issues BEGIN itself)."""
    return bool(connection.get_autocommit()) and not connection.in_atomic_block


def _returned(cursor: Any) -> list[tuple[Any, ...]] | None:
    raw = getattr(cursor, "cursor", cursor)
    if getattr(raw, "description", None) is None or getattr(raw, "name", None):
        return None
    try:
        found = [tuple(r) for r in raw.fetchall()]
        raw.scroll(0, mode="absolute")
    except Exception:
        return None
    return found


def _wrapper(
    database: Database,
    execute: Callable[..., Any],
    sql: str,
    params: Any,
    many: bool,
    context: Mapping[str, Any],
) -> Any:
    frame = current_frame()
    escaped = params is not None
    template = database.template(sql, escaped)
    if frame is None and not template.acts:
        return execute(sql, params, many, context)
    connection = context["connection"]
    run = _runner(connection)
    state = _state(connection)
    if frame is not None and template.reads and not template.writes:
        raw = connection.connection
        database.read(
            frame,
            template,
            sql,
            escaped,
            params,
            run,
            state,
            isolation=_driver_isolation(raw),
            in_transaction=lambda: _in_transaction(raw),
        )
    pending = None
    if template.writes or template.opaque or template.functions or template.schema_change:
        pending = database.before_write(template, sql, escaped, params, many, run, frame)
    result = execute(sql, params, many, context)
    writes: CommittedWrites | None = None
    if pending is not None and (pending.plan.steps or pending.plan.opaque):
        cursor = context["cursor"]
        needs_rows = any(s.mode == "insert" and s.write.returning for s in pending.plan.steps)
        returned = _returned(cursor) if needs_rows else None
        database.after_write(pending, int(cursor.rowcount), returned, run, state)
        if _autocommit(connection):
            writes = database.commit(state)
    if template.control is not None:
        writes = database.control(template, state) or writes
    if writes is not None:
        deliver(writes)
    return result


def instrument_connection(connection: Any) -> None:
    """Hook one ``DatabaseWrapper`` (idempotent); a new DB-API connection starts a new log."""
    database = _database(connection)
    if database is None:
        return
    setattr(connection, _STATE, ConnectionState())
    if getattr(connection, _HOOKED, False):
        return
    setattr(connection, _HOOKED, True)
    connection.execute_wrappers.append(functools.partial(_wrapper, database))
    original_commit = connection._commit
    original_rollback = connection._rollback

    def _commit(*args: Any, **kwargs: Any) -> Any:
        try:
            return original_commit(*args, **kwargs)
        finally:
            writes = database.commit(_state(connection))  # even if it raised: it may have
            if writes is not None:
                deliver(writes)

    def _rollback(*args: Any, **kwargs: Any) -> Any:
        try:
            return original_rollback(*args, **kwargs)
        finally:
            database.rollback(_state(connection))

    connection._commit = _commit
    connection._rollback = _rollback


def _connected(sender: Any, connection: Any, **kwargs: Any) -> None:
    instrument_connection(connection)


def install() -> None:
    """Hook every connection as it connects, and those of this thread already connected."""
    connection_created.connect(_connected, dispatch_uid="depcache.db.django")
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            instrument_connection(connection)
