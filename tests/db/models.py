"""The schema and the cached queries the SQLAlchemy tests share (and the writer process uses)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ForeignKey, String, func, or_, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String)
    org: Mapped[int]
    score: Mapped[float]


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str]


def seed(engine: Engine) -> None:
    """Create the tables and a few rows."""
    Base.metadata.create_all(engine)
    with Session(engine) as s, s.begin():
        s.add_all(
            [
                User(id=1, name="ada", org=1, score=1.0),
                User(id=2, name="bob", org=1, score=2.0),
                User(id=3, name="cy", org=2, score=3.0),
            ]
        )
        s.flush()  # no relationship() tells the ORM to insert users first
        s.add_all([Post(id=10, user_id=1, title="one"), Post(id=11, user_id=2, title="two")])


# -- queries: one per kind of read; each takes an engine and returns plain data -----------------


def pk_get(engine: Engine, uid: int) -> Any:
    with Session(engine) as s:
        user = s.get(User, uid)
        return None if user is None else [user.name, user.org]


def by_org(engine: Engine, org: int) -> Any:
    with Session(engine) as s:
        return sorted(s.scalars(select(User.name).where(User.org == org)))


def by_ids(engine: Engine, ids: tuple[int, ...]) -> Any:
    with Session(engine) as s:
        return sorted(s.scalars(select(User.name).where(User.id.in_(ids))))


def either(engine: Engine, uid: int) -> Any:
    with Session(engine) as s:
        return sorted(s.scalars(select(User.name).where(or_(User.id == uid, User.org == 2))))


def score_above(engine: Engine, floor: float) -> Any:
    with Session(engine) as s:
        return sorted(s.scalars(select(User.name).where(User.score > floor)))


def name_like(engine: Engine, pattern: str) -> Any:
    with Session(engine) as s:
        return sorted(s.scalars(select(User.name).where(User.name.like(pattern))))


def post_titles(engine: Engine, uid: int) -> Any:
    with Session(engine) as s:
        stmt = select(Post.title).join(User, Post.user_id == User.id).where(User.id == uid)
        return sorted(s.scalars(stmt))


def org_count(engine: Engine, org: int) -> Any:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(User).where(User.org == org))


def raw_name(engine: Engine, uid: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("select name from users where id = :i"), {"i": uid}).scalar()


QUERIES: dict[str, tuple[Callable[..., Any], list[Any]]] = {
    "pk_get": (pk_get, [1, 2, 3, 4]),
    "by_org": (by_org, [1, 2, 3]),
    "by_ids": (by_ids, [(1, 2), (2, 3), (3, 4)]),
    "either": (either, [1, 2]),
    "score_above": (score_above, [1.5]),
    "name_like": (name_like, ["a%", "b%"]),
    "post_titles": (post_titles, [1, 2]),
    "org_count": (org_count, [1, 2]),
    "raw_name": (raw_name, [1, 2, 4]),
}
