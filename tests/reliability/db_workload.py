"""The workload of the database staleness checker: its schema, rows and ORM models.

Two tables: ``users`` (``REPLICA IDENTITY FULL``: CDC knows both images of a row) and ``posts``
(``DEFAULT``: CDC knows the old key only, so its updates and deletes reach every narrowed read
of the table). Ids come from small fixed ranges so that rows are deleted and inserted again,
and reads and writes meet often. The reads are in ``db_reads.py``, the writes in
``db_writes.py``.

A row is named by an integer key (:func:`ukey`, :func:`pkey`) and its state by an *image*: the
tuple of its columns after the id (``users``: org, name, score, v; ``posts``: user_id, title,
v), or None when the row does not exist. ``v`` is the version of the row: every committed write
sets it from the sequence ``wseq``, taken while the writer holds the row's advisory lock
(``pg_advisory_xact_lock(table, id)``, until its commit), so a row's versions increase in the
order its writes committed. The checker (``db_checker.py``) knows each row's history by these
versions.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "INITIAL",
    "POST_KEYS",
    "SCHEMA",
    "USER_KEYS",
    "Change",
    "Image",
    "Post",
    "User",
    "pkey",
    "seed_statements",
    "ukey",
]

USERS = 24  # user ids 1..24
POSTS = 32  # post ids 1..32
ORGS = 4
NAMES = ("ada", "bob", "cy", "dee", "eve", "fay")
TITLES = ("alpha", "beta", "gamma", "delta")
POST_BASE = 1000

Image = tuple[Any, ...] | None
Change = tuple[int, Image]  # (row key, new image)


def ukey(uid: int) -> int:
    """The key of user ``uid``."""
    return uid


def pkey(pid: int) -> int:
    """The key of post ``pid``."""
    return POST_BASE + pid


USER_KEYS = tuple(ukey(i) for i in range(1, USERS + 1))
POST_KEYS = tuple(pkey(i) for i in range(1, POSTS + 1))

SCHEMA = (
    "CREATE TABLE users (id int PRIMARY KEY, org int NOT NULL, name text NOT NULL, "
    "score int NOT NULL, v bigint NOT NULL)",
    "ALTER TABLE users REPLICA IDENTITY FULL",
    "CREATE TABLE posts (id int PRIMARY KEY, user_id int NOT NULL, title text NOT NULL, "
    "v bigint NOT NULL)",
    "CREATE SEQUENCE wseq",
)


def _initial() -> dict[int, Image]:
    rng = random.Random(14)
    rows: dict[int, Image] = {}
    for uid in range(1, USERS + 1):
        exists = uid <= 18
        rows[ukey(uid)] = (
            (rng.randint(1, ORGS), rng.choice(NAMES), rng.randrange(100), 0) if exists else None
        )
    for pid in range(1, POSTS + 1):
        exists = pid <= 24
        rows[pkey(pid)] = (rng.randint(1, USERS), rng.choice(TITLES), 0) if exists else None
    return rows


#: the state every row starts in (version 0)
INITIAL: Mapping[int, Image] = _initial()


def seed_statements() -> list[str]:
    """The INSERTs of :data:`INITIAL`."""
    out = []
    for key, image in INITIAL.items():
        if image is None:
            continue
        if key < POST_BASE:
            org, name, score, v = image
            out.append(f"INSERT INTO users VALUES ({key}, {org}, '{name}', {score}, {v})")
        else:
            user_id, title, v = image
            out.append(f"INSERT INTO posts VALUES ({key - POST_BASE}, {user_id}, '{title}', {v})")
    return out


# -- the ORM -------------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    org: Mapped[int]
    name: Mapped[str]
    score: Mapped[int]
    v: Mapped[int] = mapped_column(BigInteger)


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    user_id: Mapped[int]
    title: Mapped[str]
    v: Mapped[int] = mapped_column(BigInteger)
