"""The committed writes of the database staleness checker: through an instrumented engine
(ORM units of work, Core bulk statements with ``RETURNING``, ``text()``), invalidated by the
writing process at commit, or raw SQL on a plain psycopg connection that only ``depcache cdc``
sees. Each takes the advisory locks of the rows it may write, then a version from ``wseq``, and
returns the version and the new image of every row it wrote; some roll back instead."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from sqlalchemy import Connection, delete, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from tests.reliability.db_workload import (
    NAMES,
    ORGS,
    POST_BASE,
    POSTS,
    TITLES,
    USERS,
    Change,
    Image,
    Post,
    User,
    pkey,
    ukey,
)

__all__ = ["ORM_WRITES", "RAW_WRITES", "RolledBack"]

ROLLBACK_SHARE = 0.05  # of write transactions that write, then roll back


class RolledBack(Exception):  # control flow, not an error
    """Raised inside a write transaction to roll it back (it must invalidate nothing)."""


def _new_user(rng: random.Random, v: int) -> tuple[Any, ...]:
    return (rng.randint(1, ORGS), rng.choice(NAMES), rng.randrange(100), v)


def _new_post(rng: random.Random, v: int) -> tuple[Any, ...]:
    return (rng.randint(1, USERS + 2), rng.choice(TITLES), v)  # sometimes a user that never is


def _changed_user(rng: random.Random, old: tuple[Any, ...], v: int) -> tuple[Any, ...]:
    org, name, score, _ = old
    what = rng.randrange(3)
    if what == 0:
        org = rng.randint(1, ORGS)
    elif what == 1:
        name = rng.choice(NAMES)
    else:
        score = rng.randrange(100)
    return (org, name, score, v)


def _changed_post(rng: random.Random, old: tuple[Any, ...], v: int) -> tuple[Any, ...]:
    user_id, title, _ = old
    if rng.random() < 0.5:
        user_id = rng.randint(1, USERS + 2)
    else:
        title = rng.choice(TITLES)
    return (user_id, title, v)


def _lock_keys(keys: Iterable[int]) -> list[tuple[int, int]]:
    """(table code, id) pairs of advisory locks, in one global order (no deadlocks)."""
    return sorted((1 if k < POST_BASE else 2, k % POST_BASE) for k in set(keys))


_LOCK = text("SELECT pg_advisory_xact_lock(:t, :i)")
_NEXTVAL = text("SELECT nextval('wseq')")


def _orm_prepare(conn: Session | Connection, keys: Iterable[int]) -> int:
    for table, ident in _lock_keys(keys):
        conn.execute(_LOCK, {"t": table, "i": ident})
    return int(conn.execute(_NEXTVAL).scalar_one())


def _maybe_roll_back(rng: random.Random) -> None:
    if rng.random() < ROLLBACK_SHARE:
        raise RolledBack


WriteResult = tuple[int, list[Change]]


def orm_user(engine: Engine, rng: random.Random) -> WriteResult:
    """A unit of work on one user: insert it, delete it, or change a column."""
    uid = rng.randint(1, USERS)
    with Session(engine) as s, s.begin():
        v = _orm_prepare(s, [ukey(uid)])
        user = s.get(User, uid)
        image: Image
        if user is None:
            image = _new_user(rng, v)
            s.add(User(id=uid, org=image[0], name=image[1], score=image[2], v=v))
        elif rng.random() < 0.25:
            s.delete(user)
            image = None
        else:
            image = _changed_user(rng, (user.org, user.name, user.score, user.v), v)
            user.org, user.name, user.score, user.v = image
        s.flush()
        _maybe_roll_back(rng)
    return v, [(ukey(uid), image)]


def orm_post(engine: Engine, rng: random.Random) -> WriteResult:
    """A unit of work on one post: insert it, delete it, or move or rename it."""
    pid = rng.randint(1, POSTS)
    with Session(engine) as s, s.begin():
        v = _orm_prepare(s, [pkey(pid)])
        post = s.get(Post, pid)
        image: Image
        if post is None:
            image = _new_post(rng, v)
            s.add(Post(id=pid, user_id=image[0], title=image[1], v=v))
        elif rng.random() < 0.25:
            s.delete(post)
            image = None
        else:
            image = _changed_post(rng, (post.user_id, post.title, post.v), v)
            post.user_id, post.title, post.v = image
        s.flush()
        _maybe_roll_back(rng)
    return v, [(pkey(pid), image)]


def core_bulk_update(engine: Engine, rng: random.Random) -> WriteResult:
    """A bulk ``update()`` of users by ``IN`` and an org, with an expression (rows read back)."""
    ids = sorted(rng.sample(range(1, USERS + 1), 4))
    org = rng.randint(1, ORGS)
    with engine.begin() as conn:
        v = _orm_prepare(conn, map(ukey, ids))
        stmt = (
            update(User)
            .where(User.id.in_(ids), User.org != org)
            .values(score=(User.score + 7) % 100, v=v)
            .returning(User.id, User.org, User.name, User.score, User.v)
        )
        rows = conn.execute(stmt).all()
        _maybe_roll_back(rng)
    return v, [(ukey(r[0]), tuple(r[1:])) for r in rows]


def core_bulk_delete(engine: Engine, rng: random.Random) -> WriteResult:
    """A bulk ``delete()`` of posts by ``IN`` and a title."""
    ids = sorted(rng.sample(range(1, POSTS + 1), 3))
    with engine.begin() as conn:
        v = _orm_prepare(conn, map(pkey, ids))
        stmt = delete(Post).where(Post.id.in_(ids), Post.title != rng.choice(TITLES))
        rows = conn.execute(stmt.returning(Post.id)).all()
        _maybe_roll_back(rng)
    return v, [(pkey(r[0]), None) for r in rows]


_MOVE_POST = text("UPDATE posts SET user_id = :u, v = :v WHERE id = :p RETURNING title")
_RENAME_USER = text(
    "UPDATE users SET name = :n, v = :v WHERE id = :u RETURNING org, name, score, v"
)


def text_move(engine: Engine, rng: random.Random) -> WriteResult:
    """``text()`` in one transaction over both tables: a post moves to a user who is renamed."""
    pid, uid = rng.randint(1, POSTS), rng.randint(1, USERS)
    with engine.begin() as conn:
        v = _orm_prepare(conn, [pkey(pid), ukey(uid)])
        changes: list[Change] = []
        title = conn.execute(_MOVE_POST, {"u": uid, "v": v, "p": pid}).scalar()
        if title is not None:
            changes.append((pkey(pid), (uid, title, v)))
        row = conn.execute(_RENAME_USER, {"n": rng.choice(NAMES), "v": v, "u": uid}).first()
        if row is not None:
            changes.append((ukey(uid), tuple(row)))
        _maybe_roll_back(rng)
    return v, changes


ORM_WRITES: tuple[Callable[[Engine, random.Random], WriteResult], ...] = (
    orm_user,
    orm_user,
    orm_post,
    core_bulk_update,
    core_bulk_delete,
    text_move,
)


def _raw_prepare(conn: psycopg.Connection[Any], keys: Iterable[int]) -> int:
    for table, ident in _lock_keys(keys):
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", [table, ident])
    row = conn.execute("SELECT nextval('wseq')").fetchone()
    assert row is not None
    return int(row[0])


def _raw_end(conn: psycopg.Connection[Any], rng: random.Random) -> None:
    if rng.random() < ROLLBACK_SHARE:
        conn.rollback()
        raise RolledBack
    conn.commit()


def raw_user(conn: psycopg.Connection[Any], rng: random.Random) -> WriteResult:
    """Raw SQL on one user: insert, delete or update."""
    uid = rng.randint(1, USERS)
    v = _raw_prepare(conn, [ukey(uid)])
    old = conn.execute("SELECT org, name, score, v FROM users WHERE id = %s", [uid]).fetchone()
    image: Image
    if old is None:
        image = _new_user(rng, v)
        conn.execute("INSERT INTO users VALUES (%s, %s, %s, %s, %s)", [uid, *image])
    elif rng.random() < 0.25:
        conn.execute("DELETE FROM users WHERE id = %s", [uid])
        image = None
    else:
        image = _changed_user(rng, tuple(old), v)
        conn.execute(
            "UPDATE users SET org = %s, name = %s, score = %s, v = %s WHERE id = %s",
            [*image, uid],
        )
    _raw_end(conn, rng)
    return v, [(ukey(uid), image)]


def raw_post(conn: psycopg.Connection[Any], rng: random.Random) -> WriteResult:
    """Raw SQL on one post: insert, delete or update."""
    pid = rng.randint(1, POSTS)
    v = _raw_prepare(conn, [pkey(pid)])
    old = conn.execute("SELECT user_id, title, v FROM posts WHERE id = %s", [pid]).fetchone()
    image: Image
    if old is None:
        image = _new_post(rng, v)
        conn.execute("INSERT INTO posts VALUES (%s, %s, %s, %s)", [pid, *image])
    elif rng.random() < 0.25:
        conn.execute("DELETE FROM posts WHERE id = %s", [pid])
        image = None
    else:
        image = _changed_post(rng, tuple(old), v)
        conn.execute(
            "UPDATE posts SET user_id = %s, title = %s, v = %s WHERE id = %s", [*image, pid]
        )
    _raw_end(conn, rng)
    return v, [(pkey(pid), image)]


def raw_bulk(conn: psycopg.Connection[Any], rng: random.Random) -> WriteResult:
    """A raw multi-row UPDATE of users with an expression and a DELETE of posts (``= ANY``,
    and a condition that leaves some of the rows): both tables in one transaction."""
    ids = sorted(rng.sample(range(1, USERS + 1), 4))
    posts = sorted(rng.sample(range(1, POSTS + 1), 2))
    v = _raw_prepare(conn, [*map(ukey, ids), *map(pkey, posts)])
    rows = conn.execute(
        "UPDATE users SET score = (score + 13) %% 100, v = %s WHERE id = ANY(%s) AND org <> %s "
        "RETURNING id, org, name, score, v",
        [v, ids, rng.randint(1, ORGS)],
    ).fetchall()
    gone = conn.execute(
        "DELETE FROM posts WHERE id = ANY(%s) AND title <> %s RETURNING id",
        [posts, rng.choice(TITLES)],
    ).fetchall()
    _raw_end(conn, rng)
    return v, [(ukey(r[0]), tuple(r[1:])) for r in rows] + [(pkey(r[0]), None) for r in gone]


RAW_WRITES: tuple[Callable[[psycopg.Connection[Any], random.Random], WriteResult], ...] = (
    raw_user,
    raw_user,
    raw_post,
    raw_bulk,
)
