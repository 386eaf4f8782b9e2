#!/usr/bin/env python
"""Database tracking benchmark: what instrumenting an engine costs per statement, and how
precise its invalidations are.

    python -m bench.bench_db [--pg-url URL] [--quick] [--json out.json] [--markdown [PATH]]

1. Per-statement cost: a primary-key ``SELECT`` through SQLAlchemy Core on one open connection
   (psycopg, PostgreSQL over loopback), through a plain engine and through an instrumented one
   (``depcache.db.sqlalchemy.instrument``), outside any cached call and inside one (a frame
   entered around the loop, so the decorator's own cost is not counted). Rounds alternate the
   engines; the median time per statement of each, and the ratios instrumented / plain
   (issue 14's targets: at most 1.01 outside, 1.10 inside).
2. Precision: a mixed workload of cached reads (by primary key, by an equality, by ``IN``) and
   committed ORM writes (a rename, a score change, an insert, a delete), run twice: with
   depcache's row dependencies, and with every read depending on its tables (the model of
   django-cachalot). After each write, every entry that was removed is recomputed: the share of
   removals whose value had not changed is the needless invalidation rate. Every entry still
   cached must equal a fresh query (stale entries are a problem, and fail the run).

Exit status: 0 when everything ran and no cached entry was stale, 3 otherwise. Missing a target
is reported, not an error.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import String, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import depcache
import depcache.db.plans
import depcache.db.sqlalchemy as dsa
from depcache import ConfigBase, cache_with_deps, get_or_create_cache_manager
from depcache.context import Frame

try:
    from bench import _harness as h
except ModuleNotFoundError as exc:  # run as a file: bench is not importable then
    if exc.name != "bench":
        raise
    raise SystemExit("run it from the checkout as a module: python -m bench.bench_db") from None

from bench._harness import Document, Table

DEFAULT_PG = os.environ.get(
    "DEPCACHE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "bench_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String)
    org: Mapped[int]
    score: Mapped[float]


# -- 1. per-statement cost -----------------------------------------------------------------------


def _per_statement(engine: Engine, n: int, inside: Frame | None) -> float:
    ids = [1 + i % 100 for i in range(n)]
    with engine.connect() as conn:
        for uid in ids[:50]:  # warm: compiled cache, plans, catalog
            conn.execute(select(User.name).where(User.id == uid)).scalar()
        if inside is not None:
            inside.enter()
        try:
            start = time.perf_counter()
            for uid in ids:
                conn.execute(select(User.name).where(User.id == uid)).scalar()
            return (time.perf_counter() - start) / n
        finally:
            if inside is not None:
                inside.exit()


def statement_cost(url: str, quick: bool) -> dict[str, Any]:
    plain = create_engine(url)
    tracked = create_engine(url)
    dsa.instrument(tracked)
    manager = depcache.registered_managers()["bench_db"]
    rounds, n = (5, 300) if quick else (15, 2000)
    times: dict[str, list[float]] = {
        k: [] for k in ("plain out", "tracked out", "plain in", "tracked in")
    }
    try:
        for r in range(rounds):
            order = [(plain, "plain"), (tracked, "tracked")]
            if r % 2:
                order.reverse()
            for engine, label in order:
                times[f"{label} out"].append(_per_statement(engine, n, None))
                frame = Frame(manager, f"bench:{r}:{label}", None, ())
                times[f"{label} in"].append(_per_statement(engine, n, frame))
    finally:
        plain.dispose()
        tracked.dispose()
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "statements_per_round": n,
        "rounds": rounds,
        "seconds_per_statement_median": median,
        "seconds_per_statement_rounds": times,
        "ratio_outside": median["tracked out"] / median["plain out"],
        "ratio_inside": median["tracked in"] / median["plain in"],
    }


# -- 2. precision --------------------------------------------------------------------------------


def _table_level(self: depcache.db.plans.ReadPlan, params: Any) -> set[str]:
    """A read plan that depends on its tables only (django-cachalot's model)."""
    deps = set(self.static)
    deps |= {depcache.db.table_dependency(t.info.name, t.info.schema) for t in self.narrow}
    return deps


def precision(url: str, quick: bool, table_level: bool, seed: int) -> dict[str, Any]:  # noqa: PLR0912  # one workload, step by step
    rng = random.Random(seed)
    engine = create_engine(url)
    database = dsa.instrument(engine, precise_writes=not table_level)
    name = f"bench_db_{'table' if table_level else 'rows'}"
    get_or_create_cache_manager(name, config=ConfigBase(backend="memory", prefix=name))
    original = depcache.db.plans.ReadPlan.dependencies
    if table_level:
        depcache.db.plans.ReadPlan.dependencies = _table_level  # type: ignore[method-assign]
    try:
        with Session(engine) as s, s.begin():
            s.query(User).delete()
            s.add_all(User(id=i, name=f"u{i}", org=i % 20, score=0.0) for i in range(1, 201))

        def by_pk(uid: int) -> Any:
            with Session(engine) as s:
                user = s.get(User, uid)
                return None if user is None else [user.name, user.org]

        def by_org(org: int) -> Any:
            with Session(engine) as s:
                return sorted(s.scalars(select(User.name).where(User.org == org)))

        def by_ids(first: int) -> Any:
            with Session(engine) as s:
                ids = [first, first + 1, first + 2]
                return sorted(s.scalars(select(User.name).where(User.id.in_(ids))))

        reads: list[tuple[Callable[[int], Any], list[int]]] = [
            (by_pk, list(range(1, 61))),
            (by_org, list(range(20))),
            (by_ids, list(range(1, 200, 10))),
        ]
        computed: dict[tuple[str, int], int] = {}

        def counted(fn: Callable[[int], Any]) -> Callable[[int], Any]:
            def body(arg: int) -> Any:
                computed[(fn.__name__, arg)] = computed.get((fn.__name__, arg), 0) + 1
                return fn(arg)

            body.__qualname__ = f"bench_{fn.__name__}"
            return cache_with_deps(name=name)(body)

        cached = [(counted(fn), fn, args) for fn, args in reads]
        removed = needless = stale = 0
        writes = 15 if quick else 150
        next_id = 1000
        for _ in range(writes):
            values = {}
            for wrapped, fn, args in cached:
                for arg in args:
                    values[(fn.__name__, arg)] = wrapped(arg)
            before = dict(computed)
            kind = rng.choice(["rename", "score", "insert", "delete"])
            with Session(engine) as s, s.begin():
                uid = rng.randint(1, 200)
                user = s.get(User, uid)
                if kind == "insert" or user is None:
                    s.add(User(id=next_id, name=f"n{next_id}", org=rng.randrange(20), score=0.0))
                    next_id += 1
                elif kind == "rename":
                    user.name = f"{user.name}'"
                elif kind == "score":
                    user.score += 1.0
                else:
                    s.delete(user)
            for wrapped, fn, args in cached:
                for arg in args:
                    key = (fn.__name__, arg)
                    got = wrapped(arg)
                    if computed[key] > before[key]:  # it had been invalidated
                        removed += 1
                        needless += got == values[key]
                    elif got != fn(arg):
                        stale += 1
        return {
            "writes": writes,
            "cached_reads": sum(len(a) for _, _, a in cached),
            "removed": removed,
            "needless": needless,
            "needless_share": needless / removed if removed else 0.0,
            "stale": stale,
            "database": database.name,
        }
    finally:
        depcache.db.plans.ReadPlan.dependencies = original  # type: ignore[method-assign]
        engine.dispose()


# -- main ----------------------------------------------------------------------------------------


def _database(admin_url: str) -> tuple[str, Callable[[], None]]:
    name = f"depcache_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}", drop


def report(data: dict[str, Any]) -> Document:
    doc = Document()
    cost = data["statement_cost"]
    doc.heading("Per-statement cost of read tracking (primary-key SELECT, SQLAlchemy Core)")
    table = Table(["where", "plain engine", "instrumented", "ratio", "target"], right={1, 2, 3})
    med = cost["seconds_per_statement_median"]
    for label, key, target in (
        ("outside a cached call", "out", "<= 1.01"),
        ("inside a cached call", "in", "<= 1.10"),
    ):
        ratio = med[f"tracked {key}"] / med[f"plain {key}"]
        table.add(
            [
                label,
                f"{med[f'plain {key}'] * 1e6:.1f} µs",
                f"{med[f'tracked {key}'] * 1e6:.1f} µs",
                f"{ratio:.3f}x",
                target,
            ]
        )
    doc.table(table)
    doc.para(
        f"Median over {cost['rounds']} alternating rounds of {cost['statements_per_round']} "
        "statements on one connection; PostgreSQL over loopback, psycopg 3."
    )
    doc.heading("Precision: removals of entries whose value had not changed")
    table = Table(
        ["dependencies", "entries removed", "needlessly", "share", "stale"], right={1, 2, 3, 4}
    )
    for label, key in (
        ("depcache rows and column values", "rows"),
        ("tables only (django-cachalot)", "tables"),
    ):
        p = data["precision"][key]
        table.add(
            [
                label,
                str(p["removed"]),
                str(p["needless"]),
                f"{p['needless_share']:.1%}",
                str(p["stale"]),
            ]
        )
    doc.table(table)
    p = data["precision"]["rows"]
    doc.para(
        f"{p['writes']} committed ORM writes (rename, score change, insert, delete; random rows) "
        f"over {p['cached_reads']} cached reads (by primary key, by org, by IN); after each "
        "write every removed entry is recomputed and compared with its value before the write."
    )
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG,
        help="libpq URL of a database to create the benchmark's database from",
    )
    args = parser.parse_args(argv)
    problems: list[str] = []
    data: dict[str, Any] = {
        "meta": h.environment(quick=args.quick, pg_url=args.pg_url),
        "problems": problems,
    }
    url, drop = _database(args.pg_url)
    try:
        engine = create_engine(url)
        Base.metadata.create_all(engine)
        with Session(engine) as s, s.begin():
            s.add_all(User(id=i, name=f"u{i}", org=i % 20, score=0.0) for i in range(1, 201))
        engine.dispose()
        get_or_create_cache_manager(
            "bench_db", config=ConfigBase(backend="memory", prefix="bench_db")
        )
        data["statement_cost"] = statement_cost(url, args.quick)
        data["precision"] = {
            "rows": precision(url, args.quick, table_level=False, seed=1),
            "tables": precision(url, args.quick, table_level=True, seed=1),
        }
        for key in ("rows", "tables"):
            if data["precision"][key]["stale"]:
                problems.append(f"{data['precision'][key]['stale']} stale entries ({key})")
    except Exception:
        problems.append(traceback.format_exc())
    finally:
        drop()
    doc = report(data) if "precision" in data else Document()
    h.publish(doc, args, data, script="bench_db.py", default_markdown=h.RESULTS / "db.md")
    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    return 3 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
