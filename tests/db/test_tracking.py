"""The write log: savepoints, two-phase commits, and what a transaction delivers."""

from __future__ import annotations

import pytest

pytest.importorskip("sqlglot")

from depcache.db.analyser import analyse
from depcache.db.catalog import PostgresCatalog
from depcache.db.tracking import ConnectionState, Database


def control(database: Database, state: ConnectionState, sql: str) -> object:
    return database.control(analyse(sql), state)


def test_savepoints_drop_what_they_roll_back_and_keep_what_they_release() -> None:
    database = Database("db", PostgresCatalog(), "pyformat")
    state = ConnectionState()
    state.add({"a"})
    control(database, state, "SAVEPOINT s1")
    state.add({"b"})
    control(database, state, "SAVEPOINT s2")
    state.add({"c"})
    control(database, state, "ROLLBACK TO SAVEPOINT s1")  # drops b and c, s1 stays
    assert state.has_writes()
    state.add({"d"})
    control(database, state, "RELEASE SAVEPOINT s1")
    control(database, state, "ROLLBACK TO SAVEPOINT unknown")  # drops nothing
    writes = control(database, state, "COMMIT")
    assert writes is not None
    assert writes.dependencies == {"a", "d"}  # type: ignore[attr-defined]
    assert not state.has_writes()


def test_a_prepared_transaction_delivers_when_committed_anywhere() -> None:
    database = Database("db", PostgresCatalog(), "pyformat")
    first, second = ConnectionState(), ConnectionState()
    first.add({"x"})
    assert control(database, first, "PREPARE TRANSACTION 'gid-1'") is None
    assert not first.has_writes()  # the connection is out of the transaction
    second.add({"y"})
    assert control(database, second, "PREPARE TRANSACTION 'gid-2'") is None
    assert control(database, second, "ROLLBACK PREPARED 'gid-2'") is None
    writes = control(database, second, "COMMIT PREPARED 'gid-1'")  # from another connection
    assert writes is not None
    assert writes.dependencies == {"x"}  # type: ignore[attr-defined]
    assert control(database, second, "COMMIT PREPARED 'gid-2'") is None  # rolled back
    first.add({"z"})
    control(database, first, "ROLLBACK")
    assert database.commit(first) is None
