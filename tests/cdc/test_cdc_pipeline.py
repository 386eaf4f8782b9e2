"""``depcache cdc`` end to end: raw SQL committed by other connections and processes reaches a
real worker through a real ``depcache cdc`` process, and invalidates exactly what the
dependency scheme says on real Redis managers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import psycopg
import pytest

import depcache
from depcache.db import any_row_dependency, column_dependency, table_dependency
from tests.support.cdc_fixtures import CdcPipeline
from tests.support.celery_fixtures import wait_for

pytestmark = pytest.mark.redis

USERS = """
CREATE TABLE users (
    id int PRIMARY KEY,
    name text,
    email varchar(200),
    score numeric,
    seen timestamptz DEFAULT now()
)
"""


def col(column: str, value: object, table: str = "users") -> str:
    dep = column_dependency(table, column, value)
    assert dep is not None
    return dep


def narrowed(column: str, value: object, table: str = "users") -> set[str]:
    """What a read narrowed on ``column = value`` depends on."""
    return {col(column, value, table), any_row_dependency(table)}


def fill(pipeline: CdcPipeline, entries: dict[str, set[str]]) -> None:
    for manager in pipeline.managers:
        for key, deps in entries.items():
            manager.set(key, key, dependencies=deps)


def present(pipeline: CdcPipeline, *keys: str) -> dict[str, bool]:
    """Per key: whether it is still cached on every manager (it must agree across them)."""
    result = {}
    for key in keys:
        seen = {m.exists(key) for m in pipeline.managers}
        assert len(seen) == 1, f"{key}: the managers disagree"
        result[key] = seen.pop()
    return result


def write_from_another_process(dsn: str, *statements: str) -> None:
    """Run ``statements`` (each its own transaction) in a separate Python process."""
    code = textwrap.dedent(
        """
        import sys, psycopg
        with psycopg.connect(sys.argv[1], autocommit=True) as conn:
            for statement in sys.argv[2:]:
                conn.execute(statement)
        """
    )
    subprocess.run([sys.executable, "-c", code, dsn, *statements], check=True, timeout=120)


def test_slot_and_publication_are_created(cdc_pipeline: CdcPipeline) -> None:
    db = cdc_pipeline.db
    with db.connect() as conn:
        pub = conn.execute(
            "SELECT puballtables, pubviaroot, pubinsert, pubupdate, pubdelete, pubtruncate "
            "FROM pg_publication WHERE pubname = %s",
            [f"p_{db.uid}"],
        ).fetchone()
        slot = conn.execute(
            "SELECT plugin, slot_type, active FROM pg_replication_slots WHERE slot_name = %s",
            [cdc_pipeline.slot],
        ).fetchone()
    assert pub == (True, True, True, True, True, True)
    assert slot == ("pgoutput", "logical", True)


def test_default_identity(cdc_pipeline: CdcPipeline) -> None:
    """REPLICA IDENTITY DEFAULT: inserts are precise; updates and deletes know the old row's key
    only, so they also invalidate every narrowed read of the table (any-row)."""
    pipeline = cdc_pipeline
    pipeline.db.execute(USERS)
    entries = {
        "user1": narrowed("id", 1),
        "user2": narrowed("id", 2),
        "by_email": narrowed("email", "ada@example.com"),
        "all": {table_dependency("users")},
        "hand_written_key1": {col("id", 1)},
        "other_table": {table_dependency("posts")},
    }
    fill(pipeline, entries)
    write_from_another_process(
        pipeline.db.dsn, "INSERT INTO users (id, name, email) VALUES (1, 'Ada', 'ada@example.com')"
    )
    pipeline.barrier()
    assert present(pipeline, *entries) == {
        "user1": False,
        "user2": True,  # an insert of user 1 does not touch a read of user 2
        "by_email": False,
        "all": False,
        "hand_written_key1": False,
        "other_table": True,
    }

    fill(pipeline, entries)
    pipeline.db.execute("UPDATE users SET name = 'Ada L.' WHERE id = 1")
    pipeline.barrier()
    gone = present(pipeline, *entries)
    assert gone == {k: k == "other_table" for k in entries}, gone

    # the key changes: the old key is in the stream (K image), so a hand-written dependency on it
    # is reached too, and the new one
    fill(pipeline, {**entries, "hand_written_key3": {col("id", 3)}})
    pipeline.db.execute("UPDATE users SET id = 3 WHERE id = 1")
    pipeline.barrier()
    assert not any(present(pipeline, "hand_written_key1", "hand_written_key3").values())

    fill(pipeline, entries)
    pipeline.db.execute("DELETE FROM users WHERE id = 3")
    pipeline.barrier()
    gone = present(pipeline, *entries)
    assert gone == {k: k in ("other_table", "hand_written_key1") for k in entries}, gone


def test_full_identity_is_precise(cdc_pipeline: CdcPipeline) -> None:
    """REPLICA IDENTITY FULL: both images are known, so a write to user 1 never invalidates a
    read of user 2, for updates, key changes and deletes alike."""
    pipeline = cdc_pipeline
    pipeline.db.execute(
        USERS,
        "ALTER TABLE users REPLICA IDENTITY FULL",
        "INSERT INTO users (id, name, email, score) VALUES "
        "(1, 'Ada', 'ada@example.com', 1.50), (2, 'Bob', 'bob@example.com', 2)",
    )
    pipeline.barrier()
    entries = {
        "user1": narrowed("id", 1),
        "user2": narrowed("id", 2),
        "ada_old_email": narrowed("email", "ada@example.com"),
        "ada_new_email": narrowed("email", "ada@lovelace.org"),
        "bob_email": narrowed("email", "bob@example.com"),
        "score_1.5": narrowed("score", "1.5"),  # numeric by value: 1.50 is 1.5
        "users_in_1_2": {col("id", 1), col("id", 2), any_row_dependency("users")},
        "all": {table_dependency("users")},
    }
    fill(pipeline, entries)
    write_from_another_process(
        pipeline.db.dsn, "UPDATE users SET email = 'ada@lovelace.org' WHERE id = 1"
    )
    pipeline.barrier()
    assert present(pipeline, *entries) == {
        "user1": False,
        "user2": True,
        "ada_old_email": False,
        "ada_new_email": False,
        "bob_email": True,
        "score_1.5": False,  # the row's unchanged score: its reads saw this row
        "users_in_1_2": False,
        "all": False,
    }

    fill(pipeline, {**entries, "user7": narrowed("id", 7)})
    pipeline.db.execute("UPDATE users SET id = 7 WHERE id = 1")
    pipeline.barrier()
    state = present(pipeline, "user1", "user7", "user2", "bob_email")
    assert state == {"user1": False, "user7": False, "user2": True, "bob_email": True}

    fill(pipeline, entries)
    pipeline.db.execute("DELETE FROM users WHERE id = 2")
    pipeline.barrier()
    state = present(pipeline, "user1", "user2", "bob_email", "ada_new_email", "all")
    assert state == {
        "user1": True,
        "user2": False,
        "bob_email": False,
        "ada_new_email": True,
        "all": False,
    }


def test_multi_row_truncate_and_rollback(cdc_pipeline: CdcPipeline) -> None:
    pipeline = cdc_pipeline
    pipeline.db.execute(USERS, "ALTER TABLE users REPLICA IDENTITY FULL")
    rows = {f"user{i}": narrowed("id", i) for i in range(1, 6)}
    fill(pipeline, rows)
    # one statement, several rows
    pipeline.db.execute(
        "INSERT INTO users (id, name) SELECT i, 'n' || i FROM generate_series(1, 3) i"
    )
    pipeline.barrier()
    assert present(pipeline, *rows) == {
        "user1": False,
        "user2": False,
        "user3": False,
        "user4": True,
        "user5": True,
    }

    # a rolled-back transaction invalidates nothing
    fill(pipeline, rows)
    with psycopg.connect(pipeline.db.dsn) as conn:
        conn.execute("UPDATE users SET name = 'x' WHERE id = 4")
        conn.execute("INSERT INTO users (id) VALUES (5)")
        conn.rollback()
    pipeline.barrier()
    assert all(present(pipeline, *rows).values())

    # TRUNCATE names no rows: every cached read of the table
    fill(pipeline, {**rows, "other_table": narrowed("id", 1, "posts")})
    pipeline.db.execute("TRUNCATE users")
    pipeline.barrier()
    assert not any(present(pipeline, *rows).values())
    assert present(pipeline, "other_table") == {"other_table": True}


def test_large_transaction(cdc_pipeline: CdcPipeline) -> None:
    """12,000 rows in one transaction: published in parts (the default batch is 5,000 rows),
    every row's dependency invalidated."""
    pipeline = cdc_pipeline
    pipeline.db.execute("CREATE TABLE items (id int PRIMARY KEY, label text)")
    probes = [1, 4999, 5000, 5001, 9999, 12000]
    entries = {f"item{i}": {col("id", i, "items")} for i in probes}
    entries["beyond"] = {col("id", 12001, "items")}
    fill(pipeline, entries)
    write_from_another_process(
        pipeline.db.dsn,
        "INSERT INTO items SELECT i, repeat('x', 20) FROM generate_series(1, 12000) i",
    )
    pipeline.barrier(timeout=60)
    assert present(pipeline, *entries) == {key: key == "beyond" for key in entries}


def test_new_tables_columns_and_types(cdc_pipeline: CdcPipeline) -> None:
    """A table created after the CDC started, a column added while it streams, a domain and an
    enum: handled, never a crash; a domain narrows as its base type."""
    pipeline = cdc_pipeline
    pipeline.db.execute(
        "CREATE DOMAIN positive AS int CHECK (VALUE > 0)",
        "CREATE TYPE mood AS ENUM ('sad', 'happy')",
        "CREATE TABLE pets (id positive PRIMARY KEY, mood mood, tags text[])",
    )
    entries = {
        "pet1": narrowed("id", 1, "pets"),
        "pet2": narrowed("id", 2, "pets"),
        "pets": {table_dependency("pets")},
    }
    fill(pipeline, entries)
    pipeline.db.execute("INSERT INTO pets VALUES (1, 'happy', '{a,b}')")
    pipeline.barrier()
    assert present(pipeline, *entries) == {"pet1": False, "pet2": True, "pets": False}

    pipeline.db.execute("ALTER TABLE pets ADD COLUMN nickname varchar(20)")
    fill(pipeline, {**entries, "rex": narrowed("nickname", "Rex", "pets")})
    pipeline.db.execute("INSERT INTO pets VALUES (3, 'sad', '{}', 'Rex')")
    pipeline.barrier()
    assert present(pipeline, "pet2", "rex", "pets") == {"pet2": True, "rex": False, "pets": False}
    assert pipeline.cdc.running()


def test_sigterm_stops_after_confirming(cdc_pipeline: CdcPipeline) -> None:
    pipeline = cdc_pipeline
    pipeline.db.execute("CREATE TABLE items (id int PRIMARY KEY)")
    pipeline.db.execute("INSERT INTO items VALUES (1)")
    pipeline.barrier()
    with pipeline.db.connect() as conn:
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert pipeline.cdc.stop() == 0
    assert "stopped at" in pipeline.cdc.output()
    status = pipeline.db.slot_status(pipeline.slot)
    assert status is not None
    assert not status[1]
    with pipeline.db.connect() as conn:
        behind = conn.execute(
            "SELECT %s::pg_lsn <= confirmed_flush_lsn FROM pg_replication_slots "
            "WHERE slot_name = %s",
            [lsn[0] if lsn else None, pipeline.slot],
        ).fetchone()
    assert behind == (True,)


def test_the_dsn_password_never_shows(cdc_pipeline: CdcPipeline) -> None:
    """The log names the server without credentials (a wrong password is refused; the trust
    server here accepts any, so the password must simply never be printed)."""
    output = cdc_pipeline.cdc.output()
    assert "postgresql://postgres@127.0.0.1" in output
    assert "guest:guest" not in output


def test_every_manager_sees_the_same(cdc_pipeline: CdcPipeline) -> None:
    """The worker fans each CDC event out to every registered manager."""
    first, second = cdc_pipeline.managers
    assert first.name != second.name
    assert set(depcache.registered_managers()) >= {first.name, second.name}
    cdc_pipeline.db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    fill(cdc_pipeline, {"t1": narrowed("id", 1, "t")})
    cdc_pipeline.db.execute("INSERT INTO t VALUES (1)")
    wait_for(lambda: not first.exists("t1") and not second.exists("t1"), what="both managers")
