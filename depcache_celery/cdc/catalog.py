"""The CDC's ordinary SQL connection: publication and slot set-up, column types, commit
visibility and the slot's health.

One :class:`Catalog` per stream session, autocommit, separate from the replication connection
(which is busy streaming).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .pgoutput import format_lsn, parse_lsn
from .replication import safe_dsn

__all__ = ["BUILTIN_TYPES", "Catalog", "CatalogError", "SlotLost", "SlotStatus", "Snapshot"]

logger = logging.getLogger(__name__)

BUILTIN_TYPES: dict[int, str] = {
    16: "bool",
    17: "bytea",
    18: "char",
    19: "name",
    20: "int8",
    21: "int2",
    23: "int4",
    25: "text",
    26: "oid",
    114: "json",
    700: "float4",
    701: "float8",
    1042: "bpchar",
    1043: "varchar",
    1082: "date",
    1083: "time",
    1114: "timestamp",
    1184: "timestamptz",
    1186: "interval",
    1700: "numeric",
    2950: "uuid",
    3802: "jsonb",
}
"""Type names of common built-in types (their OIDs never change), so the catalog is asked only
about the others."""

# a domain's base type, through domains of domains
_TYPE_NAMES = """
WITH RECURSIVE base(oid, typ, depth) AS (
    SELECT t.oid, t.oid, 0 FROM pg_type t WHERE t.oid = ANY(%s)
  UNION ALL
    SELECT base.oid, t.typbasetype, base.depth + 1
    FROM base JOIN pg_type t ON t.oid = base.typ
    WHERE t.typtype = 'd' AND base.depth < 10
)
SELECT DISTINCT ON (base.oid) base.oid, t.typname
FROM base JOIN pg_type t ON t.oid = base.typ
ORDER BY base.oid, base.depth DESC
"""


class CatalogError(Exception):
    """The database refused a set-up step or could not be reached (the message says which,
    without the DSN's password)."""


class SlotLost(CatalogError):
    """The slot's WAL was removed (``max_slot_wal_keep_size`` exceeded): changes since its
    confirmed position are gone."""


@dataclass(frozen=True)
class SlotStatus:
    """The slot as ``pg_replication_slots`` shows it, with byte distances from the current WAL
    position: ``lag_bytes`` to the confirmed position (what is not yet handled),
    ``retained_bytes`` to the restart position (the WAL kept for the slot)."""

    confirmed_lsn: int
    lag_bytes: int
    retained_bytes: int
    wal_status: str | None
    safe_wal_size: int | None
    active_pid: int | None


@dataclass(frozen=True)
class Snapshot:
    """``pg_current_snapshot()``: transactions below ``xmin`` are settled, from ``xmax`` on
    they had not started, those in ``running`` were in progress."""

    xmin: int
    xmax: int
    running: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        """From the text form ``xmin:xmax:xip,...``."""
        xmin, xmax, running = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in running.split(",") if x))

    def full_xid(self, xid: int) -> int:
        """The 64-bit id of the 32-bit transaction id ``xid`` (at most 2^31 behind xmax)."""
        full = (self.xmax & ~0xFFFFFFFF) | xid
        if full > self.xmax:
            full -= 1 << 32
        return full

    def visible(self, xid: int) -> bool:
        """Whether a committed transaction ``xid`` (32-bit) is visible to this snapshot (and so
        to every snapshot taken after it)."""
        full = self.full_xid(xid)
        return full < self.xmin or (full < self.xmax and full not in self.running)


class Catalog:
    """The SQL side of the CDC (see the module's docstring)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.where = safe_dsn(dsn)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._types: dict[int, str | None] = dict(BUILTIN_TYPES)

    def connect(self) -> None:
        """Open the connection.

        Raises:
            CatalogError: the server cannot be reached.
        """
        try:
            self._conn = psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=10, application_name="depcache-cdc"
            )
        except psycopg.Error as exc:
            raise CatalogError(f"cannot connect to {self.where}: {_reason(exc)}") from None

    @property
    def conn(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None:
            raise CatalogError("the catalog connection is not open")
        return self._conn

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _execute(self, query: sql.Composable | str, params: Sequence[object] = ()) -> list[tuple]:  # type: ignore[type-arg]
        try:
            cursor = self.conn.execute(query, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description is not None else []
        except psycopg.Error as exc:
            raise CatalogError(f"{self.where}: {_reason(exc)}") from None

    # -- set-up ----------------------------------------------------------------------------------
    def ensure_publication(self, name: str, tables: Sequence[str]) -> bool:
        """Create publication ``name`` when missing: for ``tables`` (``schema.table`` or
        ``table``), else for all tables; with ``publish_via_partition_root`` so a partitioned
        table's changes carry its own name. Returns True when it was created.

        Raises:
            CatalogError: it could not be created (creating one ``FOR ALL TABLES`` needs a
                superuser; for some tables, ownership of them).
        """
        if self._execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [name]):
            return False
        target: sql.Composable
        if tables:
            target = sql.SQL("FOR TABLE {}").format(
                sql.SQL(", ").join(sql.Identifier(*table.split(".", 1)) for table in tables)
            )
        else:
            target = sql.SQL("FOR ALL TABLES")
        query = sql.SQL("CREATE PUBLICATION {} {} WITH (publish_via_partition_root = true)")
        try:
            self._execute(query.format(sql.Identifier(name), target))
        except CatalogError as exc:
            if "already exists" in str(exc):  # another CDC process created it meanwhile
                return False
            raise CatalogError(f"cannot create publication {name!r}: {exc}") from None
        return True

    def ensure_slot(self, name: str) -> bool:
        """Create the logical replication slot ``name`` with ``pgoutput`` when missing; returns
        True when it was created.

        Raises:
            CatalogError: it exists with another output plugin, or could not be created
                (``wal_level`` is not ``logical``, no free ``max_replication_slots``, no
                ``REPLICATION`` privilege).
        """
        rows = self._execute(
            "SELECT plugin, slot_type FROM pg_replication_slots WHERE slot_name = %s", [name]
        )
        if rows:
            plugin, kind = rows[0]
            if kind != "logical" or plugin != "pgoutput":
                raise CatalogError(
                    f"replication slot {name!r} exists but is a {kind} slot of plugin "
                    f"{plugin!r}; depcache cdc needs a logical slot of 'pgoutput' (name another "
                    "one with --slot)"
                )
            return False
        try:
            self._execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [name])
        except CatalogError as exc:
            if "already exists" in str(exc):
                return False
            raise CatalogError(f"cannot create replication slot {name!r}: {exc}") from None
        return True

    def drop_slot(self, name: str) -> None:
        """Drop slot ``name`` (after it was lost, to create it anew)."""
        self._execute("SELECT pg_drop_replication_slot(%s)", [name])

    def published_tables(self, publication: str) -> list[tuple[str, str]]:
        """``(schema, table)`` of every table publication ``publication`` covers."""
        rows = self._execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
            [publication],
        )
        return [(str(schema), str(table)) for schema, table in rows]

    # -- types -----------------------------------------------------------------------------------
    def type_names(self, oids: Iterable[int]) -> dict[int, str | None]:
        """``pg_type.typname`` of each type OID, a domain's being its base type's; None for an
        OID the catalog does not have (dropped meanwhile)."""
        wanted = set(oids)
        missing = [oid for oid in wanted if oid not in self._types]
        if missing:
            found = {int(oid): str(name) for oid, name in self._execute(_TYPE_NAMES, [missing])}
            for oid in missing:
                self._types[oid] = found.get(oid)
        return {oid: self._types[oid] for oid in wanted}

    # -- visibility ------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """A snapshot taken now."""
        rows = self._execute("SELECT pg_current_snapshot()::text")
        return Snapshot.parse(str(rows[0][0]))

    def wait_visible(self, xids: Iterable[int], *, warn_after: float = 5.0) -> None:
        """Return once every committed transaction in ``xids`` is visible to new snapshots.

        A transaction's commit reaches the replication stream when its WAL record is flushed,
        a moment before the committing session makes it visible (much longer with synchronous
        replication, which makes the commit wait for a standby). Invalidating in between would
        let a reader cache the row's old version afresh; so events are published only once
        their transactions are visible.
        """
        pending = set(xids)
        start = time.monotonic()
        delay = 0.0005
        warned = False
        while pending:
            snapshot = self.snapshot()
            pending = {xid for xid in pending if not snapshot.visible(xid)}
            if not pending:
                return
            if not warned and time.monotonic() - start > warn_after:
                warned = True
                logger.warning(
                    "depcache cdc: transactions %s committed but are still not visible after "
                    "%.0f s (a synchronous standby not answering?); their invalidations wait",
                    sorted(pending)[:5],
                    warn_after,
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    # -- health ----------------------------------------------------------------------------------
    def slot_status(self, name: str) -> SlotStatus | None:
        """The slot's positions and WAL retention, or None when it does not exist."""
        rows = self._execute(
            """
            SELECT confirmed_flush_lsn::text,
                   COALESCE(pg_current_wal_lsn() - confirmed_flush_lsn, 0)::bigint,
                   COALESCE(pg_current_wal_lsn() - restart_lsn, 0)::bigint,
                   wal_status, safe_wal_size, active_pid
            FROM pg_replication_slots WHERE slot_name = %s
            """,
            [name],
        )
        if not rows:
            return None
        confirmed, lag, retained, wal_status, safe, pid = rows[0]
        return SlotStatus(
            confirmed_lsn=parse_lsn(str(confirmed)) if confirmed else 0,
            lag_bytes=int(lag),
            retained_bytes=int(retained),
            wal_status=None if wal_status is None else str(wal_status),
            safe_wal_size=None if safe is None else int(safe),
            active_pid=None if pid is None else int(pid),
        )


def _reason(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return str(primary or exc).strip().splitlines()[0] if str(primary or exc).strip() else repr(exc)


def describe_lsn(lsn: int) -> str:
    """An LSN for logs."""
    return format_lsn(lsn)
