"""Caching that needs no annotation: depcache reads the dependencies from the SQL itself.

There is no ``add_dependency`` and no ``emit`` below. ``instrument(engine)`` makes every cached
read record the rows it read, and every committed write invalidate the rows it wrote.

    python examples/db_app.py                  # SQLite in a temporary file, in-memory cache
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/mydb REDIS_URL=redis://... \\
        python examples/db_app.py              # PostgreSQL (row-precise) and Redis

On PostgreSQL a write to one user leaves the cached pages of other users alone; on SQLite
depcache tracks whole tables (every write to ``users`` recomputes every page).
"""

from __future__ import annotations

import os
import tempfile

from sqlalchemy import ForeignKey, String, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import depcache.db.sqlalchemy
from depcache import ConfigBase, RedisConfig, cache_with_deps, get_or_create_cache_manager


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "example_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String)


class Post(Base):
    __tablename__ = "example_posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("example_users.id"))
    title: Mapped[str]


computed: list[str] = []


def make_engine() -> Engine:
    url = os.environ.get("DATABASE_URL")
    if not url:
        url = f"sqlite:///{tempfile.mkdtemp()}/example.sqlite"
    engine = create_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    depcache.db.sqlalchemy.instrument(engine)  # once, at start-up
    return engine


engine = make_engine()
prefix = os.environ.get("DEP_CACHE_PREFIX", "db_app")
config = (
    RedisConfig(url=os.environ["REDIS_URL"], prefix=prefix)
    if os.environ.get("REDIS_URL")
    else ConfigBase(backend="memory", prefix=prefix)
)
cache = get_or_create_cache_manager(prefix, config=config)


@cache_with_deps(name=prefix, ttl=600)
def user_page(user_id: int) -> dict[str, object]:
    """No add_dependency: the queries say what this result depends on."""
    computed.append(f"user_page({user_id})")
    with Session(engine) as s:
        user = s.get(User, user_id)
        posts = s.scalars(select(Post.title).where(Post.user_id == user_id)).all()
        return {"name": user.name if user else None, "posts": sorted(posts)}


def main() -> None:
    with Session(engine) as s, s.begin():
        s.add_all([User(id=1, name="Ada"), User(id=2, name="Grace")])
        s.flush()
        s.add_all([Post(id=1, user_id=1, title="Notes"), Post(id=2, user_id=2, title="COBOL")])
    print(f"database {engine.dialect.name}, cache {prefix!r} on {config.backend}")
    print("page 1:", user_page(1), "| page 2:", user_page(2))
    user_page(1), user_page(2)
    print("computed:", computed)  # twice each would be a bug: the second calls were hits

    computed.clear()
    with Session(engine) as s, s.begin():  # no emit anywhere
        s.get(User, 1).name = "Ada Lovelace"  # type: ignore[union-attr]
        s.add(Post(id=3, user_id=1, title="Analytical Engine"))
    print("after writing user 1:", user_page(1), "| page 2:", user_page(2))
    print("computed:", computed)


if __name__ == "__main__":
    main()
