"""The streaming replication protocol on a ``replication=database`` connection.

psycopg 3 has no replication API, but its libpq wrapper (:mod:`psycopg.pq`) exposes what the
protocol needs: ``START_REPLICATION`` puts the connection in COPY BOTH mode, the server sends
``XLogData`` and keepalive messages, and we send *standby status updates*. Driving the protocol
here keeps the one thing that matters for delivery in our hands: the flush position reported to
the server (which becomes the slot's ``confirmed_flush_lsn``) is exactly what the caller passes
to :meth:`ReplicationStream.send_status`, never advanced behind its back (psycopg2's
``ReplicationCursor`` moves it to a keepalive's WAL end on its own).

Message layouts: https://www.postgresql.org/docs/15/protocol-replication.html
"""

from __future__ import annotations

import select
import struct
import time
from dataclasses import dataclass

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["Keepalive", "ReplicationError", "ReplicationStream", "XLogData", "safe_dsn"]

_PG_EPOCH = 946684800  # 2000-01-01 in Unix time
_XLOGDATA = struct.Struct("!QQq")
_KEEPALIVE = struct.Struct("!Qq?")
_STATUS = struct.Struct("!cQQQq?")


class ReplicationError(Exception):
    """The replication connection failed or the server refused to stream (the message says
    why, without the DSN's password)."""


@dataclass(frozen=True)
class XLogData:
    """One decoded change message and its position."""

    data_start: int
    wal_end: int
    payload: bytes


@dataclass(frozen=True)
class Keepalive:
    """The server's heartbeat: how far its WAL goes, and whether it wants a status now."""

    wal_end: int
    reply_requested: bool


def safe_dsn(dsn: str) -> str:
    """``dsn`` for logs: host, port, database and user, never the password."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "<unparsable DSN>"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    user = params.get("user") or ""
    return f"postgresql://{user}{'@' if user else ''}{host}:{port}/{params.get('dbname') or ''}"


def _now_pg() -> int:
    return int((time.time() - _PG_EPOCH) * 1_000_000)


def _message(pgconn: pq.abc.PGconn) -> str:
    return bytes(pgconn.error_message).decode("utf-8", "replace").strip()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class ReplicationStream:
    """A logical replication stream of slot ``slot`` with ``pgoutput`` (protocol version 1) and
    publication ``publication``, from the slot's confirmed position.

    Raises:
        ReplicationError: from every method, when the connection fails.
    """

    def __init__(self, dsn: str, slot: str, publication: str, *, connect_timeout: int = 10):
        params = conninfo_to_dict(dsn)
        params.setdefault("connect_timeout", connect_timeout)
        params.setdefault("application_name", "depcache-cdc")
        self._conninfo = make_conninfo(
            "", **{**params, "replication": "database", "client_encoding": "UTF8"}
        )
        self._where = safe_dsn(dsn)
        self.slot = slot
        self.publication = publication
        self._pgconn: pq.abc.PGconn | None = None

    def open(self) -> None:
        """Connect and start streaming."""
        pgconn = pq.PGconn.connect(self._conninfo.encode())
        if pgconn.status != pq.ConnStatus.OK:
            message = _message(pgconn)
            pgconn.finish()
            raise ReplicationError(f"cannot connect to {self._where}: {message}")
        options = (
            f"proto_version '1', publication_names {_quote_literal(_quote_ident(self.publication))}"
        )
        command = f"START_REPLICATION SLOT {_quote_ident(self.slot)} LOGICAL 0/0 ({options})"
        pgconn.send_query(command.encode())
        result = pgconn.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_BOTH:
            message = _message(pgconn)
            pgconn.finish()
            raise ReplicationError(f"cannot stream slot {self.slot!r} on {self._where}: {message}")
        pgconn.nonblocking = 1
        self._pgconn = pgconn

    @property
    def _conn(self) -> pq.abc.PGconn:
        if self._pgconn is None:
            raise ReplicationError("the replication stream is not open")
        return self._pgconn

    def read(self, timeout: float, limit: int = 1000) -> list[XLogData | Keepalive]:
        """What the server has sent, up to ``limit`` messages; waits up to ``timeout`` seconds
        for the first. An empty list: nothing came."""
        conn = self._conn
        frames: list[XLogData | Keepalive] = []
        waited = False
        while len(frames) < limit:
            size, data = conn.get_copy_data(1)
            if size > 0:
                frames.append(self._frame(bytes(data)))
                continue
            if size == 0:
                if frames or waited:
                    break
                ready, _, _ = select.select([conn.socket], [], [], max(timeout, 0.0))
                waited = True
                if not ready:
                    break
                try:
                    conn.consume_input()
                except psycopg.Error as exc:
                    raise ReplicationError(f"replication connection lost: {exc}") from None
                continue
            self._ended()
        return frames

    def _ended(self) -> None:
        conn = self._conn
        result = conn.get_result()
        message = _message(conn)
        if result is not None and result.error_message:
            message = bytes(result.error_message).decode("utf-8", "replace").strip()
        raise ReplicationError(f"the server ended the replication stream: {message}")

    @staticmethod
    def _frame(data: bytes) -> XLogData | Keepalive:
        kind = data[:1]
        if kind == b"w":
            start, end, _sent = _XLOGDATA.unpack_from(data, 1)
            return XLogData(start, end, data[1 + _XLOGDATA.size :])
        if kind == b"k":
            end, _sent, reply = _KEEPALIVE.unpack_from(data, 1)
            return Keepalive(end, reply)
        raise ReplicationError(f"unknown replication message {kind!r}")

    def send_status(self, received: int, flushed: int, *, reply: bool = False) -> None:
        """Tell the server what was received (``write``) and handled (``flush`` and ``apply``:
        the slot's confirmed position, below which it may recycle WAL)."""
        conn = self._conn
        message = _STATUS.pack(b"r", received, flushed, flushed, _now_pg(), reply)
        try:
            while conn.put_copy_data(message) == 0:
                select.select([], [conn.socket], [], 1.0)
            while conn.flush() == 1:
                select.select([], [conn.socket], [], 1.0)
        except psycopg.Error as exc:
            raise ReplicationError(f"replication connection lost: {exc}") from None

    def close(self) -> None:
        """Close the connection (the slot keeps its confirmed position)."""
        if self._pgconn is not None:
            self._pgconn.finish()
            self._pgconn = None
