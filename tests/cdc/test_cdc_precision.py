"""Precision through CDC (issue 14): with ``REPLICA IDENTITY FULL``, raw SQL writing user 1 in
another process, seen only by ``depcache cdc``, leaves cached reads of user 2 cached (by primary
key, by an equality, by ``IN``), and invalidates every read of user 1. The reads are real cached
functions over an instrumented SQLAlchemy engine; nothing but CDC and the worker invalidates."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import depcache.db.sqlalchemy as dsa
from depcache import cache_with_deps
from tests.cdc.test_cdc_pipeline import write_from_another_process
from tests.support.cdc_fixtures import CdcPipeline

pytestmark = pytest.mark.redis


class Base(DeclarativeBase):
    pass


class Member(Base):
    __tablename__ = "members"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str]
    org: Mapped[int]
    email: Mapped[str]


def by_pk(engine: Engine, uid: int) -> Any:
    with Session(engine) as s:
        member = s.get(Member, uid)
        return None if member is None else [member.name, member.org, member.email]


def by_org(engine: Engine, org: int) -> Any:
    with engine.connect() as conn:
        stmt = select(Member.name).where(Member.org == org).order_by(Member.id)
        return list(conn.scalars(stmt))


def by_email(engine: Engine, email: str) -> Any:
    with engine.connect() as conn:
        query = text("SELECT id FROM members WHERE email = :e ORDER BY id")
        return list(conn.scalars(query, {"e": email}))


def by_ids(engine: Engine, ids: tuple[int, ...]) -> Any:
    with Session(engine) as s:
        stmt = select(Member.name).where(Member.id.in_(ids)).order_by(Member.id)
        return list(s.scalars(stmt))


QUERIES: dict[str, Callable[[Engine, Any], Any]] = {
    "by_pk": by_pk,
    "by_org": by_org,
    "by_email": by_email,
    "by_ids": by_ids,
}
#: reads that only see user 2 (user 1 is in org 1, never bob@example.com)
OF_USER_2 = [("by_pk", 2), ("by_org", 2), ("by_email", "bob@example.com"), ("by_ids", (2, 3))]
#: reads that see user 1, whatever its state
OF_USER_1 = [("by_pk", 1), ("by_org", 1), ("by_ids", (1, 2))]


@pytest.fixture
def engine(cdc_pipeline: CdcPipeline) -> Iterator[Engine]:
    cdc_pipeline.db.execute(
        "CREATE TABLE members (id int PRIMARY KEY, name text NOT NULL, org int NOT NULL, "
        "email varchar(100) NOT NULL)",
        "ALTER TABLE members REPLICA IDENTITY FULL",
        "INSERT INTO members VALUES (1, 'ada', 1, 'ada@example.com'), "
        "(2, 'bob', 2, 'bob@example.com'), (3, 'cy', 2, 'cy@example.com')",
    )
    cdc_pipeline.barrier()
    engine = create_engine(cdc_pipeline.db.dsn.replace("postgresql://", "postgresql+psycopg://"))
    dsa.instrument(engine)
    yield engine
    engine.dispose()


def test_a_raw_write_to_user_1_leaves_reads_of_user_2_cached(
    cdc_pipeline: CdcPipeline, engine: Engine
) -> None:
    calls: collections.Counter[tuple[str, Any]] = collections.Counter()
    cached: dict[str, Callable[[Any], Any]] = {}
    for name, query in QUERIES.items():

        def body(arg: Any, _name: str = name, _query: Any = query) -> Any:
            calls[(_name, arg)] += 1
            return _query(engine, arg)

        body.__qualname__ = f"precision_{name}"
        cached[name] = cache_with_deps(name=cdc_pipeline.managers[0].name)(body)
    for name, arg in OF_USER_2 + OF_USER_1:
        cached[name](arg)
    every = {read for read, _ in OF_USER_1}
    writes = [  # each with the reads of user 1 it must reach (those whose result it may change)
        ("UPDATE members SET name = 'ada l', email = 'ada@lovelace.org' WHERE id = 1", every),
        ("UPDATE members SET id = 7 WHERE id = 1", every),  # a key change
        ("UPDATE members SET id = 1 WHERE id = 7", every),
        ("UPDATE members SET org = 3 WHERE id = 1", every),  # leaves org 1 for an org unread
        ("DELETE FROM members WHERE id = 1", {"by_pk", "by_ids"}),  # in org 3: not by_org(1)
        ("INSERT INTO members VALUES (1, 'ada', 1, 'ada@example.com')", every),
    ]
    for write, reached in writes:
        before = calls.copy()
        write_from_another_process(cdc_pipeline.db.dsn, write)
        cdc_pipeline.barrier()
        for name, arg in OF_USER_2 + OF_USER_1:
            assert cached[name](arg) == QUERIES[name](engine, arg), f"{name}({arg!r}) stale"
            computed = calls[(name, arg)] - before[(name, arg)]
            assert computed == (name in reached and (name, arg) in OF_USER_1), (write, name, arg)
    assert cached["by_pk"](1) == ["ada", 1, "ada@example.com"]
