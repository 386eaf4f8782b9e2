"""The cached reads of the database staleness checker: each runs one statement through an
instrumented SQLAlchemy engine (the ORM, Core or ``text()``; one statement, so PostgreSQL answers
it from one snapshot), and says how to compute its result from a known state of the rows, for
the checker."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from tests.reliability.db_workload import (
    NAMES,
    ORGS,
    POST_BASE,
    POST_KEYS,
    POSTS,
    USER_KEYS,
    USERS,
    Image,
    Post,
    User,
    pkey,
    ukey,
)

__all__ = ["QUERIES", "Query"]

Rows = list[list[Any]]
State = Mapping[int, Image]


def _users(state: State) -> Iterable[tuple[int, tuple[Any, ...]]]:
    for uid in range(1, USERS + 1):
        image = state.get(ukey(uid))
        if image is not None:
            yield uid, image


def _posts(state: State) -> Iterable[tuple[int, tuple[Any, ...]]]:
    for pid in range(1, POSTS + 1):
        image = state.get(pkey(pid))
        if image is not None:
            yield pid, image


def _plain(rows: Iterable[Sequence[Any]]) -> Rows:
    return [list(row) for row in rows]


@dataclass(frozen=True)
class Query:
    """One kind of cached read.

    ``run(engine, params)`` is the cached function's body (one statement); ``draw`` draws its
    parameters; ``keys(params)`` are the rows whose state may change its result; ``relevant(key,
    image, params)`` tells whether a row with that (existing) image can appear in or change the
    result (an over-approximation is fine: it only prunes the checker's search); ``evaluate``
    gives the result on a state of those rows, exactly as PostgreSQL would.
    """

    name: str
    narrowed: bool  # whether depcache narrows it to rows (else it depends on a table)
    run: Callable[[Engine, tuple[Any, ...]], Any]
    draw: Callable[[random.Random], tuple[Any, ...]]
    keys: Callable[[tuple[Any, ...]], Sequence[int]]
    relevant: Callable[[int, tuple[Any, ...], tuple[Any, ...]], bool]
    evaluate: Callable[[State, tuple[Any, ...]], Any]


def _org(rng: random.Random) -> tuple[Any, ...]:
    return (rng.randint(1, ORGS),)


def _uid(rng: random.Random) -> tuple[Any, ...]:
    return (rng.randint(1, USERS),)


# pk: the ORM's Session.get
def _pk_run(engine: Engine, params: tuple[Any, ...]) -> Any:
    with Session(engine) as s:
        user = s.get(User, params[0])
        return None if user is None else [user.id, user.org, user.name, user.score, user.v]


def _pk_eval(state: State, params: tuple[Any, ...]) -> Any:
    image = state.get(ukey(params[0]))
    return None if image is None else [params[0], *image]


# equality: Core
def _eq_run(engine: Engine, params: tuple[Any, ...]) -> Any:
    with engine.connect() as conn:
        stmt = select(User.id, User.score, User.v).where(User.org == params[0]).order_by(User.id)
        return _plain(conn.execute(stmt))


def _eq_eval(state: State, params: tuple[Any, ...]) -> Any:
    return [[uid, img[2], img[3]] for uid, img in _users(state) if img[0] == params[0]]


# OR of one column: text()
_OR_SQL = text("SELECT id, org, v FROM users WHERE org = :a OR org = :b ORDER BY id")


def _or_run(engine: Engine, params: tuple[Any, ...]) -> Any:
    with engine.connect() as conn:
        return _plain(conn.execute(_OR_SQL, {"a": params[0], "b": params[1]}))


def _or_eval(state: State, params: tuple[Any, ...]) -> Any:
    return [[uid, img[0], img[3]] for uid, img in _users(state) if img[0] in params]


# IN: the ORM
def _in_run(engine: Engine, params: tuple[Any, ...]) -> Any:
    with Session(engine) as s:
        stmt = select(User.id, User.name, User.v).where(User.id.in_(params)).order_by(User.id)
        return _plain(s.execute(stmt))


def _in_eval(state: State, params: tuple[Any, ...]) -> Any:
    return [[uid, img[1], img[3]] for uid, img in _users(state) if uid in params]


# range: text(), table level
_RANGE_SQL = text("SELECT id, score FROM users WHERE score BETWEEN :lo AND :hi ORDER BY id")


def _range_run(engine: Engine, params: tuple[Any, ...]) -> Any:
    with engine.connect() as conn:
        return _plain(conn.execute(_RANGE_SQL, {"lo": params[0], "hi": params[1]}))


def _range_eval(state: State, params: tuple[Any, ...]) -> Any:
    lo, hi = params
    return [[uid, img[2]] for uid, img in _users(state) if lo <= img[2] <= hi]


def _range_draw(rng: random.Random) -> tuple[Any, ...]:
    lo = rng.randrange(0, 100, 20)
    return (lo, lo + 19)


# OR across columns: table level
_EITHER_SQL = text("SELECT id FROM users WHERE id = :i OR name = :n ORDER BY id")


def _either_run(engine: Engine, params: tuple[Any, ...]) -> Any:
    with engine.connect() as conn:
        return _plain(conn.execute(_EITHER_SQL, {"i": params[0], "n": params[1]}))


def _either_eval(state: State, params: tuple[Any, ...]) -> Any:
    return [[uid] for uid, img in _users(state) if uid == params[0] or img[1] == params[1]]


# join narrowed through the join condition: text()
_JOIN_SQL = text(
    "SELECT p.id, p.title, p.v, u.name FROM posts p JOIN users u ON u.id = p.user_id "
    "WHERE u.id = :uid ORDER BY p.id"
)


def _join_run(engine: Engine, params: tuple[Any, ...]) -> Any:
    with engine.connect() as conn:
        return _plain(conn.execute(_JOIN_SQL, {"uid": params[0]}))


def _join_eval(state: State, params: tuple[Any, ...]) -> Any:
    user = state.get(ukey(params[0]))
    if user is None:
        return []
    return [[pid, img[1], img[2], user[1]] for pid, img in _posts(state) if img[0] == params[0]]


# join by a non-key column: the ORM; posts depend on the table
def _join_org_run(engine: Engine, params: tuple[Any, ...]) -> Any:
    with Session(engine) as s:
        stmt = (
            select(User.id, Post.id, Post.v)
            .join(Post, Post.user_id == User.id)
            .where(User.org == params[0])
            .order_by(User.id, Post.id)
        )
        return _plain(s.execute(stmt))


def _join_org_eval(state: State, params: tuple[Any, ...]) -> Any:
    users = {uid for uid, img in _users(state) if img[0] == params[0]}
    return sorted([img[0], pid, img[2]] for pid, img in _posts(state) if img[0] in users)


# aggregate narrowed by an equality: Core
def _agg_run(engine: Engine, params: tuple[Any, ...]) -> Any:
    with engine.connect() as conn:
        stmt = select(func.count(), func.coalesce(func.sum(User.score), 0)).where(
            User.org == params[0]
        )
        row = conn.execute(stmt).one()
        return [int(row[0]), int(row[1])]


def _agg_eval(state: State, params: tuple[Any, ...]) -> Any:
    scores = [img[2] for _, img in _users(state) if img[0] == params[0]]
    return [len(scores), sum(scores)]


# aggregate over the whole table: text()
_GROUPS_SQL = text("SELECT org, count(*) FROM users GROUP BY org ORDER BY org")


def _groups_run(engine: Engine, params: tuple[Any, ...]) -> Any:
    with engine.connect() as conn:
        return _plain(conn.execute(_GROUPS_SQL))


def _groups_eval(state: State, params: tuple[Any, ...]) -> Any:
    counts: dict[int, int] = {}
    for _, img in _users(state):
        counts[img[0]] = counts.get(img[0], 0) + 1
    return [[org, n] for org, n in sorted(counts.items())]


# a post by its key (REPLICA IDENTITY DEFAULT): text()
_POST_SQL = text("SELECT user_id, title, v FROM posts WHERE id = :i")


def _post_run(engine: Engine, params: tuple[Any, ...]) -> Any:
    with engine.connect() as conn:
        row = conn.execute(_POST_SQL, {"i": params[0]}).first()
        return None if row is None else list(row)


def _post_eval(state: State, params: tuple[Any, ...]) -> Any:
    image = state.get(pkey(params[0]))
    return None if image is None else list(image)


# equality on a text column, posts by user IN: Core
def _name_run(engine: Engine, params: tuple[Any, ...]) -> Any:
    with engine.connect() as conn:
        stmt = select(User.id).where(User.name == params[0]).order_by(User.id)
        return _plain(conn.execute(stmt))


def _name_eval(state: State, params: tuple[Any, ...]) -> Any:
    return [[uid] for uid, img in _users(state) if img[1] == params[0]]


def _posts_of_run(engine: Engine, params: tuple[Any, ...]) -> Any:
    with engine.connect() as conn:
        stmt = select(Post.id, Post.user_id).where(Post.user_id.in_(params)).order_by(Post.id)
        return _plain(conn.execute(stmt))


def _posts_of_eval(state: State, params: tuple[Any, ...]) -> Any:
    return [[pid, img[0]] for pid, img in _posts(state) if img[0] in params]


def _all_users(params: tuple[Any, ...]) -> Sequence[int]:
    return USER_KEYS


def _all_posts(params: tuple[Any, ...]) -> Sequence[int]:
    return POST_KEYS


def _everything(params: tuple[Any, ...]) -> Sequence[int]:
    return USER_KEYS + POST_KEYS


def _any(key: int, image: tuple[Any, ...], params: tuple[Any, ...]) -> bool:
    return True


QUERIES: dict[str, Query] = {
    q.name: q
    for q in (
        Query(
            "pk", True, _pk_run, _uid,
            lambda p: (ukey(p[0]),), _any, _pk_eval,
        ),
        Query(
            "eq", True, _eq_run, _org,
            _all_users, lambda k, img, p: img[0] == p[0], _eq_eval,
        ),
        Query(
            "or", True, _or_run,
            lambda rng: tuple(sorted(rng.sample(range(1, ORGS + 1), 2))),
            _all_users, lambda k, img, p: img[0] in p, _or_eval,
        ),
        Query(
            "in", True, _in_run,
            lambda rng: tuple(sorted(rng.sample(range(1, USERS + 1), 3))),
            lambda p: tuple(ukey(u) for u in p), _any, _in_eval,
        ),
        Query(
            "range", False, _range_run, _range_draw,
            _all_users, lambda k, img, p: p[0] <= img[2] <= p[1], _range_eval,
        ),
        Query(
            "either", False, _either_run,
            lambda rng: (rng.randint(1, USERS), rng.choice(NAMES)),
            _all_users, lambda k, img, p: k == ukey(p[0]) or img[1] == p[1], _either_eval,
        ),
        Query(
            "join", True, _join_run, _uid,
            lambda p: (ukey(p[0]), *POST_KEYS),
            lambda k, img, p: k == ukey(p[0]) or (k > POST_BASE and img[0] == p[0]),
            _join_eval,
        ),
        Query(
            "join_org", False, _join_org_run, _org,
            _everything, lambda k, img, p: k > POST_BASE or img[0] == p[0], _join_org_eval,
        ),
        Query(
            "agg", True, _agg_run, _org,
            _all_users, lambda k, img, p: img[0] == p[0], _agg_eval,
        ),
        Query(
            "groups", False, _groups_run, lambda rng: (),
            _all_users, _any, _groups_eval,
        ),
        Query(
            "post", True, _post_run, lambda rng: (rng.randint(1, POSTS),),
            lambda p: (pkey(p[0]),), _any, _post_eval,
        ),
        Query(
            "name", True, _name_run, lambda rng: (rng.choice(NAMES),),
            _all_users, lambda k, img, p: img[1] == p[0], _name_eval,
        ),
        Query(
            "posts_of", True, _posts_of_run,
            lambda rng: tuple(sorted(rng.sample(range(1, USERS + 1), 2))),
            _all_posts, lambda k, img, p: img[0] in p, _posts_of_eval,
        ),
    )
}  # fmt: skip
