"""Decoding PostgreSQL's ``pgoutput`` logical replication messages (protocol version 1).

:func:`decode` turns the payload of one ``XLogData`` message into a :class:`Begin`,
:class:`Commit`, :class:`Relation`, :class:`Insert`, :class:`Update`, :class:`Delete` or
:class:`Truncate`; messages that carry nothing for invalidation (``Origin``, ``Type``, logical
decoding ``Message``) decode to :class:`Ignored`. Pure: no I/O.

Column values stay as PostgreSQL's text output (``pgoutput`` sends text unless asked for
binary), decoded from UTF-8 (the replication connection's ``client_encoding``). In a tuple a
value is a ``str``, ``None`` for SQL NULL, or :data:`UNCHANGED` for a TOASTed value the update
left as it was (``pgoutput`` does not send it).

Message layouts: https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "UNCHANGED",
    "Begin",
    "Column",
    "Commit",
    "Delete",
    "Ignored",
    "Insert",
    "Message",
    "ProtocolError",
    "Relation",
    "Truncate",
    "Tuple",
    "Unchanged",
    "Update",
    "decode",
    "format_lsn",
    "parse_lsn",
]


class ProtocolError(ValueError):
    """A payload that is not a well-formed ``pgoutput`` v1 message."""


class Unchanged:
    """The type of :data:`UNCHANGED`."""

    _instance: Unchanged | None = None

    def __new__(cls) -> Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()
"""A TOASTed column an ``UPDATE`` did not change: its value is not in the stream."""

Value = str | None | Unchanged
Tuple = tuple[Value, ...]


@dataclass(frozen=True)
class Column:
    """A column of a :class:`Relation`: ``key`` when it is part of the replica identity."""

    name: str
    type_oid: int
    key: bool


@dataclass(frozen=True)
class Relation:
    """A table's description, sent before its first change in a session and after DDL.

    ``identity`` is the table's ``REPLICA IDENTITY``: ``d`` (default: the primary key),
    ``n`` (nothing), ``f`` (full) or ``i`` (an index).
    """

    oid: int
    schema: str
    name: str
    identity: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class Begin:
    """A transaction starts: ``final_lsn`` is its commit record's LSN."""

    final_lsn: int
    commit_time: int  # microseconds since 2000-01-01
    xid: int


@dataclass(frozen=True)
class Commit:
    """A transaction ends; the slot may be confirmed up to ``end_lsn`` once it is handled."""

    commit_lsn: int
    end_lsn: int
    commit_time: int


@dataclass(frozen=True)
class Insert:
    """A row inserted: its new image."""

    relation: int
    new: Tuple


@dataclass(frozen=True)
class Update:
    """A row updated. ``old`` is the old image when the stream carries one: ``old_kind`` ``K``
    (the replica identity's columns; the others are NULL in the tuple, meaning unknown) or ``O``
    (the whole row, ``REPLICA IDENTITY FULL``); None when it does not."""

    relation: int
    old_kind: str | None
    old: Tuple | None
    new: Tuple


@dataclass(frozen=True)
class Delete:
    """A row deleted: its old image, ``K`` (key columns only) or ``O`` (the whole row)."""

    relation: int
    old_kind: str
    old: Tuple


@dataclass(frozen=True)
class Truncate:
    """Tables truncated (with ``CASCADE``, every table it reached is listed)."""

    relations: tuple[int, ...]


@dataclass(frozen=True)
class Ignored:
    """A message with nothing to invalidate (origin, type, logical decoding message)."""

    kind: str


Message = Begin | Commit | Relation | Insert | Update | Delete | Truncate | Ignored

_I8 = struct.Struct("!b")
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_I64 = struct.Struct("!q")
_U64 = struct.Struct("!Q")


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, unpacker: struct.Struct) -> int:
        try:
            (value,) = unpacker.unpack_from(self.data, self.pos)
        except struct.error:
            raise ProtocolError(f"message truncated at byte {self.pos}") from None
        self.pos += unpacker.size
        return int(value)

    def i8(self) -> int:
        return self._take(_I8)

    def i16(self) -> int:
        return self._take(_I16)

    def i32(self) -> int:
        return self._take(_I32)

    def u32(self) -> int:
        return self._take(_U32)

    def i64(self) -> int:
        return self._take(_I64)

    def u64(self) -> int:
        return self._take(_U64)

    def byte(self) -> str:
        if self.pos >= len(self.data):
            raise ProtocolError(f"message truncated at byte {self.pos}")
        value = chr(self.data[self.pos])
        self.pos += 1
        return value

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolError(f"unterminated string at byte {self.pos}")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        return _text(raw)

    def raw(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise ProtocolError(f"value of {size} bytes truncated at byte {self.pos}")
        raw = self.data[self.pos : self.pos + size]
        self.pos += size
        return raw

    def tuple(self) -> Tuple:
        count = self.i16()
        values: list[Value] = []
        for _ in range(count):
            kind = self.byte()
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED)
            elif kind == "t":
                values.append(_text(self.raw(self.i32())))
            elif kind == "b":
                raise ProtocolError("binary column values are not supported (use text)")
            else:
                raise ProtocolError(f"unknown column kind {kind!r}")
        return tuple(values)


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"text is not UTF-8 (set client_encoding=UTF8): {exc}") from None


def _relation(reader: _Reader) -> Relation:
    oid = reader.u32()
    schema = reader.string() or "pg_catalog"
    name = reader.string()
    identity = reader.byte()
    columns = []
    for _ in range(reader.i16()):
        flags = reader.i8()
        column_name = reader.string()
        type_oid = reader.u32()
        reader.i32()  # type modifier
        columns.append(Column(column_name, type_oid, bool(flags & 1)))
    return Relation(oid, schema, name, identity, tuple(columns))


def _update(reader: _Reader) -> Update:
    relation = reader.u32()
    kind = reader.byte()
    old_kind: str | None = None
    old: Tuple | None = None
    if kind in ("K", "O"):
        old_kind, old = kind, reader.tuple()
        kind = reader.byte()
    if kind != "N":
        raise ProtocolError(f"update of relation {relation}: expected a new tuple, got {kind!r}")
    return Update(relation, old_kind, old, reader.tuple())


def _delete(reader: _Reader) -> Delete:
    relation = reader.u32()
    kind = reader.byte()
    if kind not in ("K", "O"):
        raise ProtocolError(f"delete of relation {relation}: expected an old tuple, got {kind!r}")
    return Delete(relation, kind, reader.tuple())


def _insert(reader: _Reader) -> Insert:
    relation = reader.u32()
    kind = reader.byte()
    if kind != "N":
        raise ProtocolError(f"insert into relation {relation}: expected a new tuple, got {kind!r}")
    return Insert(relation, reader.tuple())


def _truncate(reader: _Reader) -> Truncate:
    count = reader.i32()
    reader.i8()  # options: CASCADE, RESTART IDENTITY
    return Truncate(tuple(reader.u32() for _ in range(count)))


def decode(payload: bytes) -> Message:
    """Decode one ``pgoutput`` message.

    Raises:
        ProtocolError: the payload is empty, truncated, or of a kind protocol version 1 does
            not have (streamed transactions need version 2, which is not asked for).
    """
    if not payload:
        raise ProtocolError("empty message")
    reader = _Reader(bytes(payload))
    kind = reader.byte()
    parse = _PARSERS.get(kind)
    if parse is not None:
        return parse(reader)
    if kind in ("O", "Y", "M"):
        return Ignored(kind)
    raise ProtocolError(f"unknown message kind {kind!r}")


def _begin(reader: _Reader) -> Begin:
    return Begin(reader.u64(), reader.i64(), reader.u32())


def _commit(reader: _Reader) -> Commit:
    reader.i8()  # flags
    return Commit(reader.u64(), reader.u64(), reader.i64())


_PARSERS: dict[str, Callable[[_Reader], Message]] = {
    "B": _begin,
    "C": _commit,
    "R": _relation,
    "I": _insert,
    "U": _update,
    "D": _delete,
    "T": _truncate,
}


def format_lsn(lsn: int) -> str:
    """``X/Y``, as PostgreSQL writes an LSN."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """The LSN written ``X/Y``.

    Raises:
        ValueError: not an LSN.
    """
    high, sep, low = text.strip().partition("/")
    if not sep:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)
