"""SQLAlchemy on PostgreSQL: every kind of read cached, every kind of write invalidating it.

The invariant (issue 14): after a write is committed, no cached call returns a result that
differs from running the function afresh. Each test checks every cached query against a fresh
run after each write.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy import create_engine, delete, insert, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import depcache
import depcache.db.sqlalchemy as dsa
from depcache import RedisConfig, cache_with_deps, get_or_create_cache_manager
from tests.db.models import QUERIES, Post, User, seed

ROOT = Path(__file__).resolve().parents[2]


def sa_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def engine(pg_dsn: str, pg_schema: str) -> Iterator[Engine]:
    engine = create_engine(
        sa_url(pg_dsn), connect_args={"options": f"-csearch_path={pg_schema}"}, pool_size=5
    )
    seed(engine)
    dsa.instrument(engine)
    yield engine
    engine.dispose()


class Cached:
    """Every query of models.QUERIES, cached on one manager, with a count of computations."""

    def __init__(self, engine: Engine, manager: str) -> None:
        self.engine = engine
        self.calls: collections.Counter[tuple[str, Any]] = collections.Counter()
        self.functions: dict[str, Callable[[Any], Any]] = {}
        for name, (query, _args) in QUERIES.items():

            def body(arg: Any, _query: Any = query, _name: str = name) -> Any:
                self.calls[(_name, arg)] += 1
                return _query(self.engine, arg)

            body.__qualname__ = f"cached_{name}"
            self.functions[name] = cache_with_deps(name=manager)(body)

    def __call__(self, name: str, arg: Any) -> Any:
        return self.functions[name](arg)

    def check(self, after: str) -> None:
        """Every cached query equals a fresh run (and is cached again)."""
        for name, (query, args) in QUERIES.items():
            for arg in args:
                fresh = query(self.engine, arg)
                assert self(name, arg) == fresh, f"{name}({arg!r}) is stale after {after}"
                before = self.calls[(name, arg)]
                assert self(name, arg) == fresh
                assert self.calls[(name, arg)] == before, f"{name}({arg!r}) was not cached"


@pytest.fixture
def cached(engine: Engine, redis_url: str, prefix: str) -> Cached:
    get_or_create_cache_manager(prefix, config=RedisConfig(url=redis_url, prefix=prefix))
    return Cached(engine, prefix)


def test_every_read_stays_fresh_through_every_kind_of_write(engine: Engine, cached: Cached) -> None:
    cached.check("seeding")
    with Session(engine) as s, s.begin():  # ORM save of a loaded object
        s.get(User, 1).name = "ADA"  # type: ignore[union-attr]
    cached.check("an ORM update")
    with Session(engine) as s, s.begin():
        s.add(User(id=4, name="dee", org=1, score=0.5))
        s.flush()
        s.add(Post(id=12, user_id=4, title="four"))
    cached.check("an ORM insert")
    with Session(engine) as s, s.begin():
        s.delete(s.get(User, 2))  # the database cascades to posts
    cached.check("an ORM delete with a cascade")
    with Session(engine) as s, s.begin():
        s.execute(update(User).where(User.org == 1).values(score=User.score + 10))
    cached.check("a bulk update with an expression")
    with Session(engine) as s, s.begin():
        s.execute(delete(User).where(User.name.like("c%")))
    cached.check("a bulk delete")
    with engine.begin() as conn:
        conn.execute(text("update users set org = 2 where id = :i"), {"i": 1})
        conn.execute(text("insert into users (id, name, org, score) values (5, 'bob', 1, 9)"))
    cached.check("raw SQL")
    with Session(engine) as s, s.begin():
        for user in s.query(User).filter(User.id.in_([1, 4])):
            user.org = 3  # an executemany UPDATE
    cached.check("an ORM flush of several rows")
    with engine.begin() as conn:
        conn.execute(insert(User), [{"id": 6, "name": "fay", "org": 1, "score": 1.0}])
        conn.execute(text("truncate posts"))
    cached.check("a Core insert and a truncate")


def test_rolled_back_writes_invalidate_nothing_and_are_never_cached(
    engine: Engine, cached: Cached
) -> None:
    cached.check("seeding")
    computed = sum(cached.calls.values())
    with Session(engine) as s:
        s.begin()
        s.get(User, 1).name = "zed"  # type: ignore[union-attr]
        s.flush()
        s.rollback()
    with Session(engine) as s, s.begin():
        nested = s.begin_nested()
        s.get(User, 2).name = "zed"  # type: ignore[union-attr]
        s.flush()
        nested.rollback()
    assert sum(cached.calls.values()) == computed
    cached.check("rolled back writes")
    assert sum(cached.calls.values()) == computed  # nothing was invalidated
    # a cached call reading inside a transaction that wrote must not keep what it read
    sessions: list[Session] = []

    @cache_with_deps(name=cached_prefix(cached))
    def reader(uid: int) -> str:
        if sessions:
            return sessions[-1].get(User, uid).name  # type: ignore[union-attr]
        with Session(engine) as fresh:
            return fresh.get(User, uid).name  # type: ignore[union-attr]

    with Session(engine) as s:
        s.begin()
        s.get(User, 3).name = "uncommitted"  # type: ignore[union-attr]
        s.flush()
        sessions.append(s)
        assert reader(3) == "uncommitted"
        sessions.clear()
        s.rollback()
    assert reader(3) == "cy"


def cached_prefix(cached: Cached) -> str:
    return next(iter(depcache.registered_managers()))


def test_a_write_to_one_row_leaves_reads_of_other_rows_cached(
    engine: Engine, cached: Cached
) -> None:
    reads = [("pk_get", 2), ("by_ids", (2, 3)), ("raw_name", 2), ("by_org", 2), ("post_titles", 2)]
    for name, arg in [*reads, ("pk_get", 1), ("raw_name", 1), ("by_ids", (1, 2))]:
        cached(name, arg)
    writes: list[tuple[str, Callable[[], None]]] = [
        ("an ORM update", lambda: _orm_rename(engine, 1, "one")),
        ("a bulk update by key", lambda: _bulk_rename(engine, 1, "uno")),
        ("raw SQL", lambda: _raw_rename(engine, 1, "eins")),
    ]
    for what, write in writes:
        before = cached.calls.copy()
        write()
        for name, arg in reads:
            cached(name, arg)
            assert cached.calls[(name, arg)] == before[(name, arg)], f"{what} hit {name}({arg})"
        assert cached("pk_get", 1)[0] == cached("raw_name", 1)
        assert cached.calls[("pk_get", 1)] == before[("pk_get", 1)] + 1, what
        assert cached("by_ids", (1, 2)) == sorted([cached("raw_name", 1), "bob"])
        assert cached.calls[("by_ids", (1, 2))] == before[("by_ids", (1, 2))] + 1, what


def _orm_rename(engine: Engine, uid: int, name: str) -> None:
    with Session(engine) as s, s.begin():
        s.get(User, uid).name = name  # type: ignore[union-attr]


def _bulk_rename(engine: Engine, uid: int, name: str) -> None:
    with Session(engine) as s, s.begin():
        s.execute(update(User).where(User.id == uid).values(name=name))


def _raw_rename(engine: Engine, uid: int, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("update users set name = :n where id = :i"), {"n": name, "i": uid})


def test_a_write_from_another_process_invalidates_here(
    engine: Engine, cached: Cached, pg_dsn: str, pg_schema: str, redis_url: str, prefix: str
) -> None:
    assert cached("pk_get", 1) == ["ada", 1]
    assert cached("by_org", 1) == ["ada", "bob"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = (
        "import sys; from sqlalchemy import create_engine; from sqlalchemy.orm import Session\n"
        "import depcache, depcache.db.sqlalchemy as dsa; from tests.db.models import User\n"
        "url, schema, redis_url, prefix = sys.argv[1:]\n"
        "depcache.get_or_create_cache_manager(prefix, config=depcache.RedisConfig("
        "url=redis_url, prefix=prefix))\n"
        "engine = create_engine(url, connect_args={'options': f'-csearch_path={schema}'})\n"
        "dsa.instrument(engine)\n"
        "with Session(engine) as s, s.begin():\n"
        "    s.get(User, 1).name = 'from elsewhere'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, sa_url(pg_dsn), pg_schema, redis_url, prefix],
        env=env,
        timeout=60,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    cached.check("a write in another process")
    assert cached("pk_get", 1) == ["from elsewhere", 1]


def test_a_read_computing_while_a_write_commits_is_not_stored_stale(
    engine: Engine, redis_url: str, prefix: str
) -> None:
    get_or_create_cache_manager(prefix, config=RedisConfig(url=redis_url, prefix=prefix))
    read_done, release = threading.Event(), threading.Event()
    slow = {"on": True}

    @cache_with_deps(name=prefix)
    def name_of(uid: int) -> str:
        with Session(engine) as s:
            name = s.get(User, uid).name  # type: ignore[union-attr]
        if slow["on"]:
            read_done.set()
            release.wait(10)
        return name

    results: list[str] = []
    reader = threading.Thread(target=lambda: results.append(name_of(1)))
    reader.start()
    assert read_done.wait(10)
    _orm_rename(engine, 1, "renamed while reading")  # commits and invalidates now
    release.set()
    reader.join(10)
    slow["on"] = False
    assert results == ["ada"]  # it read before the commit...
    assert name_of(1) == "renamed while reading"  # ...and that result was not stored


def test_a_released_savepoint_keeps_its_writes(engine: Engine, cached: Cached) -> None:
    cached.check("seeding")
    with Session(engine) as s, s.begin(), s.begin_nested():
        s.get(User, 2).name = "kept"  # type: ignore[union-attr]
    cached.check("a released savepoint")
    assert cached("pk_get", 2) == ["kept", 1]


async def test_an_async_engine_tracks_reads_and_invalidates_after_commit(
    pg_dsn: str, pg_schema: str, redis_url: str, prefix: str
) -> None:
    from sqlalchemy import select  # noqa: PLC0415
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine  # noqa: PLC0415

    options = {"options": f"-csearch_path={pg_schema}"}
    sync_engine = create_engine(sa_url(pg_dsn), connect_args=options)
    seed(sync_engine)
    sync_engine.dispose()
    engine = create_async_engine(sa_url(pg_dsn), connect_args=options)
    dsa.instrument(engine)
    get_or_create_cache_manager(prefix, config=RedisConfig(url=redis_url, prefix=prefix))
    calls: collections.Counter[tuple[str, int]] = collections.Counter()

    async def name_of(uid: int) -> str | None:
        async with AsyncSession(engine) as s:
            user = await s.get(User, uid)
            return None if user is None else user.name

    async def org_names(org: int) -> list[str]:
        async with AsyncSession(engine) as s:
            return sorted(await s.scalars(select(User.name).where(User.org == org)))

    @cache_with_deps(name=prefix)
    async def cached_name(uid: int) -> str | None:
        calls[("name", uid)] += 1
        return await name_of(uid)

    @cache_with_deps(name=prefix)
    async def cached_org(org: int) -> list[str]:
        calls[("org", org)] += 1
        return await org_names(org)

    async def check(after: str) -> None:
        for uid in (1, 2, 3, 4):
            assert await cached_name(uid) == await name_of(uid), f"name_of({uid}) after {after}"
        for org in (1, 2):
            assert await cached_org(org) == await org_names(org), f"org({org}) after {after}"

    try:
        await check("seeding")
        before = calls.copy()
        async with AsyncSession(engine) as s, s.begin():
            (await s.get(User, 1)).name = "async ada"  # type: ignore[union-attr]
        await check("an ORM update")
        assert calls[("name", 2)] == before[("name", 2)]  # another row: still cached
        assert calls[("name", 1)] == before[("name", 1)] + 1
        async with AsyncSession(engine) as s, s.begin():
            await s.execute(update(User).where(User.org == 1).values(org=2))
            s.add(User(id=4, name="dee", org=1, score=0.0))
        await check("a bulk update and an insert")
        before = calls.copy()
        async with AsyncSession(engine) as s:
            await s.begin()
            (await s.get(User, 3)).name = "never"  # type: ignore[union-attr]
            await s.flush()
            await s.rollback()
        await check("a rollback")
        assert calls == before
    finally:
        await engine.dispose()


def test_sqlite_is_tracked_at_table_level(tmp_path: Path, redis_url: str, prefix: str) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    seed(engine)
    database = dsa.instrument(engine)
    assert not database.precise_writes
    get_or_create_cache_manager(prefix, config=RedisConfig(url=redis_url, prefix=prefix))
    cached = Cached(engine, prefix)
    try:
        cached.check("seeding")
        before = cached.calls.copy()
        _orm_rename(engine, 1, "sqlite ada")
        cached.check("an ORM update")
        assert cached.calls[("pk_get", 2)] == before[("pk_get", 2)] + 1  # the table, not the row
        with engine.begin() as conn:
            conn.execute(text("delete from users where id = 3"))
            conn.execute(text("insert into users (id, name, org, score) values (7, 'gus', 2, 1)"))
        cached.check("raw SQL")
        with Session(engine) as s:
            s.begin()
            s.get(User, 2).name = "never"  # type: ignore[union-attr]
            s.flush()
            s.rollback()
        cached.check("a rollback")
    finally:
        engine.dispose()


def test_other_databases_are_refused_clearly() -> None:
    class FakeDBAPI:
        paramstyle = "format"
        Error = Exception

        @staticmethod
        def connect(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("never connects")

    engine = create_engine("mysql+mysqldb://u@localhost/db", module=FakeDBAPI)
    with pytest.raises(ValueError, match=r"mysql\+mysqldb.*add_dependency"):
        dsa.instrument(engine)
    with pytest.raises(TypeError, match="Engine"):
        dsa.instrument("postgresql://nope")


def test_a_repeatable_read_snapshot_older_than_the_call_is_not_cached(
    engine: Engine, redis_url: str, prefix: str
) -> None:
    get_or_create_cache_manager(prefix, config=RedisConfig(url=redis_url, prefix=prefix))
    computed: list[int] = []
    connection: list[Any] = []

    @cache_with_deps(name=prefix)
    def name_of(uid: int) -> str:
        computed.append(uid)
        return str(
            connection[0].execute(text("select name from users where id = :i"), {"i": uid}).scalar()
        )

    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        connection.append(conn)
        conn.execute(text("select 1"))  # the snapshot is taken here, before the cached call
        assert name_of(1) == "ada"
        assert name_of(1) == "ada"
        assert computed == [1, 1]  # not stored: the snapshot may predate an invalidation
        conn.rollback()
        assert name_of(2) == "bob"  # the transaction (and its snapshot) starts inside the call
        assert name_of(2) == "bob"
        assert computed == [1, 1, 2]
        conn.rollback()


def test_an_insert_with_a_generated_key_is_named_from_returning(
    engine: Engine, cached: Cached
) -> None:
    with engine.begin() as conn:
        conn.execute(text("select setval(pg_get_serial_sequence('users', 'id'), 100)"))
    for name, arg in [("pk_get", 2), ("by_org", 1), ("by_org", 2), ("raw_name", 2)]:
        cached(name, arg)
    before = cached.calls.copy()
    with Session(engine) as s, s.begin():
        user = User(name="generated", org=2, score=0.0)  # INSERT ... RETURNING users.id
        s.add(user)
        s.flush()
        assert user.id == 101
    assert cached("by_org", 2) == ["cy", "generated"]
    assert cached.calls[("by_org", 2)] == before[("by_org", 2)] + 1
    for name, arg in [("pk_get", 2), ("by_org", 1), ("raw_name", 2)]:
        cached(name, arg)
        assert cached.calls[(name, arg)] == before[(name, arg)], f"{name}({arg}) was invalidated"
    cached.check("an insert with a generated key")
