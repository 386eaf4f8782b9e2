"""The pure parts of the CDC: pgoutput decoding, what each change invalidates under each
REPLICA IDENTITY, batching into bus events, snapshot visibility."""

from __future__ import annotations

import json
import struct

import pytest

from depcache.db import any_row_dependency, column_dependency, table_dependency
from depcache_celery import parse_message
from depcache_celery.cdc.batching import ChangeBatch
from depcache_celery.cdc.catalog import Snapshot
from depcache_celery.cdc.changes import (
    MAX_DEPENDENCY_CHARS,
    Table,
    change_dependencies,
    truncate_dependencies,
)
from depcache_celery.cdc.pgoutput import (
    UNCHANGED,
    Begin,
    Column,
    Commit,
    Delete,
    Ignored,
    Insert,
    ProtocolError,
    Relation,
    Truncate,
    Update,
    decode,
    format_lsn,
    parse_lsn,
)
from depcache_celery.cdc.replication import safe_dsn

# --- encoding pgoutput messages, as the server does -----------------------------------------------


def _string(text: str) -> bytes:
    return text.encode() + b"\0"


def _tuple(values: list[object]) -> bytes:
    out = struct.pack("!h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED:
            out += b"u"
        else:
            raw = str(value).encode()
            out += b"t" + struct.pack("!i", len(raw)) + raw
    return out


def test_decode_every_message_kind() -> None:
    assert decode(b"B" + struct.pack("!QqI", 0x16B3748, 5, 731)) == Begin(0x16B3748, 5, 731)
    assert decode(b"C" + struct.pack("!bQQq", 0, 10, 20, 5)) == Commit(10, 20, 5)
    relation = (
        b"R"
        + struct.pack("!I", 16384)
        + _string("public")
        + _string("users")
        + b"d"
        + struct.pack("!h", 2)
        + b"\x01"
        + _string("id")
        + struct.pack("!Ii", 23, -1)
        + b"\x00"
        + _string("name")
        + struct.pack("!Ii", 25, -1)
    )
    assert decode(relation) == Relation(
        16384, "public", "users", "d", (Column("id", 23, True), Column("name", 25, False))
    )
    assert decode(b"I" + struct.pack("!I", 7) + b"N" + _tuple(["1", "Ada"])) == Insert(
        7, ("1", "Ada")
    )
    update = b"U" + struct.pack("!I", 7) + b"K" + _tuple(["1", None]) + b"N" + _tuple(["2", "é"])
    assert decode(update) == Update(7, "K", ("1", None), ("2", "é"))
    plain = b"U" + struct.pack("!I", 7) + b"N" + _tuple(["2", UNCHANGED])
    assert decode(plain) == Update(7, None, None, ("2", UNCHANGED))
    assert decode(b"D" + struct.pack("!I", 7) + b"O" + _tuple(["2", "x"])) == Delete(
        7, "O", ("2", "x")
    )
    assert decode(b"T" + struct.pack("!ibII", 2, 1, 7, 8)) == Truncate((7, 8))
    assert decode(b"Y" + struct.pack("!I", 9) + _string("public") + _string("mood")) == Ignored("Y")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"Z",
        b"B\x00\x01",
        b"I" + struct.pack("!I", 7) + b"X",
        b"I" + struct.pack("!I", 7) + b"N" + struct.pack("!h", 1) + b"t" + struct.pack("!i", 99),
        b"I" + struct.pack("!I", 7) + b"N" + struct.pack("!h", 1) + b"b",
        b"D" + struct.pack("!I", 7) + b"N",
        b"R" + struct.pack("!I", 1) + b"public",
        b"I" + struct.pack("!I", 7) + b"N" + _tuple(["x"])[:-1] + b"\xff",
    ],
)
def test_malformed_messages_raise_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(payload)


def test_lsn_text() -> None:
    assert format_lsn(0x16B3748) == "0/16B3748"
    assert parse_lsn("1/16B3748") == (1 << 32) | 0x16B3748
    with pytest.raises(ValueError, match="not an LSN"):
        parse_lsn("16B3748")


# --- what a change invalidates --------------------------------------------------------------------

TYPES = ("int4", "text", "varchar", "numeric", "timestamptz", "text")


def users(identity: str, types: tuple[str | None, ...] = TYPES) -> Table:
    names = ("id", "name", "email", "score", "seen", "bio")
    columns = tuple(
        Column(name, 0, identity == "f" or (identity in "di" and name == "id")) for name in names
    )
    return Table(Relation(1, "public", "users", identity, columns), types)


TABLE = table_dependency("users")
ANY = any_row_dependency("users")


def col(column: str, value: object) -> str:
    dep = column_dependency("users", column, value)
    assert dep is not None
    return dep


ROW1 = ("1", "Ada", "ada@x.org", "1.50", "2024-01-01 00:00:00+00", "hi")
ROW1_DEPS = {TABLE, col("id", 1), col("name", "Ada"), col("email", "ada@x.org")}
ROW1_DEPS |= {col("score", "1.5"), col("bio", "hi")}


def test_insert_names_the_new_row_only() -> None:
    assert change_dependencies(users("d"), Insert(1, ROW1)) == ROW1_DEPS


def test_update_with_full_identity_names_both_rows() -> None:
    new = ("1", "Ada", "ada@lovelace.org", "1.50", "2024-02-01 00:00:00+00", UNCHANGED)
    deps = change_dependencies(users("f"), Update(1, "O", ROW1, new))
    assert deps == ROW1_DEPS | {col("email", "ada@lovelace.org")}  # bio taken from the old row
    assert ANY not in deps


@pytest.mark.parametrize("identity", ["d", "i", "n"])
def test_update_without_old_row_adds_any_row(identity: str) -> None:
    new = ("1", "Ada L.", "ada@x.org", "1.50", "2024-01-01 00:00:00+00", "hi")
    deps = change_dependencies(users(identity), Update(1, None, None, new))
    assert ANY in deps  # a read narrowed on the old name must be reached
    assert {TABLE, col("id", 1), col("name", "Ada L.")} <= deps


def test_update_of_the_key_names_the_old_key() -> None:
    old = ("1", None, None, None, None, None)  # a K image: non-key columns are not known
    new = ("3", "Ada", "ada@x.org", "1.50", "2024-01-01 00:00:00+00", "hi")
    deps = change_dependencies(users("d"), Update(1, "K", old, new))
    assert {col("id", 1), col("id", 3), ANY, TABLE} <= deps


def test_update_keeps_precision_when_only_key_columns_could_narrow() -> None:
    """Old non-key values unknown, but no read can narrow on them (timestamps): no any-row."""
    table = Table(
        Relation(1, "public", "users", "d", (Column("id", 0, True), Column("seen", 0, False))),
        ("int4", "timestamptz"),
    )
    deps = change_dependencies(table, Update(1, None, None, ("1", "2024-01-01")))
    assert deps == {TABLE, col("id", 1)}


def test_delete_with_key_only_adds_any_row_and_full_is_precise() -> None:
    key_only = ("1", None, None, None, None, None)
    assert change_dependencies(users("d"), Delete(1, "K", key_only)) == {TABLE, col("id", 1), ANY}
    assert change_dependencies(users("f"), Delete(1, "O", ROW1)) == ROW1_DEPS


def test_unknown_values_add_any_row() -> None:
    # an unchanged TOASTed value not in the stream
    deps = change_dependencies(users("f"), Update(1, "O", (*ROW1[:5], UNCHANGED), ROW1))
    assert ANY in deps
    # a column whose type the catalog did not know
    unknown_type = users("d", ("int4", None, "varchar", "numeric", "timestamptz", "text"))
    assert ANY in change_dependencies(unknown_type, Insert(1, ROW1))
    # a value of a narrowable type without canonical form (numeric NaN)
    nan = ("1", "Ada", "ada@x.org", "NaN", None, None)
    assert ANY in change_dependencies(users("d"), Insert(1, nan))
    # a value too long for a dependency
    long_bio = (*ROW1[:5], "x" * MAX_DEPENDENCY_CHARS)
    deps = change_dependencies(users("d"), Insert(1, long_bio))
    assert ANY in deps
    assert all(len(dep) <= MAX_DEPENDENCY_CHARS for dep in deps)


def test_nulls_and_unnarrowable_types_name_nothing() -> None:
    row = ("1", None, None, None, "2024-01-01 00:00:00+00", None)
    assert change_dependencies(users("d"), Insert(1, row)) == {TABLE, col("id", 1)}


def test_truncate_and_a_tuple_of_the_wrong_size() -> None:
    assert truncate_dependencies([users("d")]) == {TABLE, ANY}
    with pytest.raises(ValueError, match="6 columns"):
        change_dependencies(users("d"), Insert(1, ("1",)))


def test_names_are_encoded_by_the_scheme() -> None:
    table = Table(Relation(1, "my.schema", "a:b", "d", (Column("c=d", 0, True),)), ("int4",))
    deps = change_dependencies(table, Insert(1, ("5",)))
    assert deps == {"db:my%2Eschema.a%3Ab", "db:my%2Eschema.a%3Ab:c%3Dd=5"}


# --- batching ----------------------------------------------------------------------------------


def test_batch_groups_by_table_and_op_and_splits_big_groups() -> None:
    batch = ChangeBatch("db", 4096)
    assert not batch
    for i in range(300):
        batch.add("public", "users", "insert", {TABLE, f"db:public.users:id={i}"})
    batch.add("public", "posts", "delete", {"db:public.posts"})
    batch.end_lsn = 0x16B3748
    events = batch.events()
    assert batch.rows == 301
    users_events = [e for e in events if e.event == "db.public.users.insert"]
    assert len(users_events) > 1
    seen: set[str] = set()
    for event in events:
        assert len(event.body) <= 4096
        message = parse_message(event.body)
        assert message.dependencies is not None
        seen.update(message.dependencies)
        assert message.data["lsn"] == "0/16B3748"
        assert message.data["source"] == "depcache cdc"
    assert seen == {TABLE, "db:public.posts", *(f"db:public.users:id={i}" for i in range(300))}
    first = json.loads(users_events[0].body)
    assert first["data"]["rows"] == 300
    assert first["data"]["parts"] == len(users_events)


# --- visibility and DSNs --------------------------------------------------------------------------


def test_snapshot_visibility_across_the_epoch() -> None:
    epoch = 3 << 32
    snapshot = Snapshot.parse(f"{epoch + 100}:{epoch + 110}:{epoch + 105}")
    assert snapshot.visible(99)  # settled before xmin
    assert snapshot.visible(104)
    assert not snapshot.visible(105)  # in progress
    assert not snapshot.visible(110)  # not started
    wrapped = Snapshot.parse(f"{epoch + 5}:{epoch + 10}:")
    assert wrapped.full_xid(0xFFFFFFF0) == epoch - 16  # the previous epoch
    assert wrapped.visible(0xFFFFFFF0)


def test_safe_dsn_never_shows_the_password() -> None:
    assert safe_dsn("postgresql://app:s3cret@db:6543/shop") == "postgresql://app@db:6543/shop"
    assert "s3cret" not in safe_dsn("host=db user=app password=s3cret dbname=shop")
    assert safe_dsn("postgresql://db/shop") == "postgresql://db:5432/shop"
    assert safe_dsn("not a dsn = = =") == "<unparsable DSN>"
