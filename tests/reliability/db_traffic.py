"""Traffic for the database staleness checker: reader and writer processes over one PostgreSQL
database streamed by ``depcache cdc``, and a barrier thread timing the stream.

Readers (spawned processes, a few threads each) call cached functions whose bodies run one
statement of ``db_workload.QUERIES`` through an instrumented SQLAlchemy engine, with no
``add_dependency`` (sometimes stalling after the statement, to widen the race with writers);
they log every read. Writers (spawned processes) commit random transactions, half through an
instrumented engine (invalidated by the writing process at commit) and half as raw SQL on a
plain psycopg connection (invalidated only through CDC and the worker); they log every
committed transaction with the images of its rows. A thread of the test process runs CDC
barriers one after the other and logs when each started and returned: that tells when the
stream had passed each raw write. Everything goes to ``db_checker.DbHistory``.

The negative control (``tracked=False``) runs the same traffic with the readers' engine not
instrumented and every cached read depending on one static dependency nobody invalidates.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import create_engine

import depcache
import depcache.db.sqlalchemy as dsa
from depcache import RedisConfig, add_dependency, cache_with_deps
from depcache.testing import reset_managers
from tests.reliability.db_checker import DbHistory
from tests.reliability.db_logs import DbReadLog, DbWriteLog
from tests.reliability.db_reads import QUERIES
from tests.reliability.db_workload import INITIAL
from tests.reliability.db_writes import ORM_WRITES, RAW_WRITES, RolledBack
from tests.reliability.traffic import Finished

__all__ = ["Barriers", "DbSetup", "run_db_traffic"]

STALL_PROBABILITY = 0.3  # of a computation stalling after its statement
STALL_SECONDS = 0.002  # at most
WRITE_PAUSE = 0.006  # a writer sleeps up to this between transactions
BARRIER_POLL = 0.001


@dataclass(frozen=True)
class DbSetup:
    """One run: the database, the managers every process registers (readers cache on the
    first), and the shape of the traffic."""

    dsn: str
    managers: tuple[tuple[str, str, str], ...]  # (name, Redis URL, prefix)
    tracked: bool = True
    readers: int = 2
    reader_threads: int = 2
    writers: int = 2
    raw_share: float = 0.5  # of write transactions that are raw SQL seen only by CDC


def sa_url(dsn: str) -> str:
    """The SQLAlchemy URL (psycopg 3) of a libpq URI."""
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


def _register(setup: DbSetup) -> str:
    for name, url, prefix in setup.managers:
        depcache.get_or_create_cache_manager(name, config=RedisConfig(url=url, prefix=prefix))
    return setup.managers[0][0]


def _cached_reads(setup: DbSetup, engine: Any) -> dict[str, Callable[..., Any]]:
    manager = setup.managers[0][0]
    functions: dict[str, Callable[..., Any]] = {}
    for name, query in QUERIES.items():

        def body(*params: Any, _run: Any = query.run) -> Any:
            result = _run(engine, params)
            if random.random() < STALL_PROBABILITY:
                time.sleep(random.random() * STALL_SECONDS)  # a writer may overtake us here
            if not setup.tracked:
                add_dependency("dbcheck:static")  # the negative control: nothing invalidates it
            return result

        body.__qualname__ = body.__name__ = f"dbcheck_{name}"
        functions[name] = cache_with_deps(name=manager, ttl=600)(body)
    return functions


def _read_loop(
    functions: dict[str, Callable[..., Any]],
    deadline: float,
    cap: int,
    seed: int,
    log: DbReadLog,
    lock: threading.Lock,
    errors: list[str],
    finished: Finished,
) -> None:
    rng = random.Random(seed)
    names = list(functions)
    clock = time.monotonic
    local: list[tuple[str, tuple[Any, ...], float, float, Any]] = []
    try:
        while clock() < deadline and len(local) < cap:
            name = rng.choice(names)
            params = QUERIES[name].draw(rng)
            start = clock()
            result = functions[name](*params)
            local.append((name, params, start, clock(), result))
    except Exception:
        errors.append(traceback.format_exc())
    finally:
        finished.finish()
        with lock:
            for read in local:
                log.add(*read)


def _write_loop(
    setup: DbSetup,
    engine: Any,
    dsn: str,
    deadline: float,
    seed: int,
    log: DbWriteLog,
    errors: list[str],
    finished: Finished,
) -> None:
    rng = random.Random(seed)
    clock = time.monotonic
    try:
        with psycopg.connect(dsn) as raw:
            while clock() < deadline and not finished.all():
                tracked = rng.random() >= setup.raw_share
                started = clock()
                try:
                    if tracked:
                        version, changes = rng.choice(ORM_WRITES)(engine, rng)
                    else:
                        version, changes = rng.choice(RAW_WRITES)(raw, rng)
                except RolledBack:
                    continue
                log.add(version, started, clock(), tracked, changes)
                time.sleep(rng.random() * WRITE_PAUSE)
    except Exception:
        errors.append(traceback.format_exc())


def _worker(
    role: str,
    setup: DbSetup,
    threads: int,
    seconds: float,
    cap: int,
    finished: Finished,
    seed: int,
    channels: tuple[Any, Any, Any],
) -> None:  # runs in a spawned child process
    ready, go, out = channels
    reset_managers()
    errors: list[str] = []
    reads, writes = DbReadLog(), DbWriteLog()
    try:
        _register(setup)
        engine = create_engine(sa_url(setup.dsn), pool_size=threads + 1)
        if role == "writer" or setup.tracked:
            dsa.instrument(engine)
        functions = _cached_reads(setup, engine)
    except Exception:
        ready.put(traceback.format_exc())
        raise
    ready.put("")
    go.wait(120)
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    if role == "reader":
        targets = [
            threading.Thread(
                target=_read_loop,
                args=(functions, deadline, cap, seed * 100 + i, reads, lock, errors, finished),
            )
            for i in range(threads)
        ]
    else:
        targets = [
            threading.Thread(
                target=_write_loop,
                args=(setup, engine, setup.dsn, deadline, seed, writes, errors, finished),
            )
        ]
    for t in targets:
        t.start()
    for t in targets:
        t.join()
    out.put((role, f"p{seed}", reads.dump(), writes.dump(), errors))
    engine.dispose()
    for manager in depcache.registered_managers().values():
        manager.close()


class Barriers:
    """CDC barriers one after the other in a thread: each commits a row of ``cdc_barrier`` and
    waits until an entry depending on it is gone from every manager. Logs (start, returned)."""

    def __init__(self, dsn: str, managers: Sequence[depcache.CacheManager], timeout: float = 30):
        self.dsn = dsn
        self.managers = managers
        self.timeout = timeout
        self.log: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cdc-barriers", daemon=True)
        self._next = 1_000_000  # clear of CdcPipeline.barrier()'s ids

    def one(self, conn: psycopg.Connection[Any]) -> None:
        """Run one barrier on ``conn`` (autocommit)."""
        self._next += 1
        n = self._next
        key = f"dbcheck-barrier:{n}"
        for manager in self.managers:
            manager.set(key, 1, dependencies={f"db:public.cdc_barrier:id={n}"})
        start = time.monotonic()
        conn.execute("INSERT INTO cdc_barrier (id) VALUES (%s)", [n])
        deadline = start + self.timeout
        while any(m.exists(key) for m in self.managers):
            if time.monotonic() > deadline:
                raise TimeoutError(f"CDC barrier {n} not invalidated after {self.timeout} s")
            time.sleep(BARRIER_POLL)
        self.log.append((start, time.monotonic()))

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self._stop.is_set():
                    self.one(conn)
                self.one(conn)  # the last: after every write
        except Exception:
            self.errors.append(traceback.format_exc())

    def __enter__(self) -> Barriers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 10)


def run_db_traffic(
    setup: DbSetup,
    managers: Sequence[depcache.CacheManager],
    seconds: float,
    max_reads: int,
) -> tuple[DbHistory, list[str]]:
    """Run readers, writers and barriers; the history and the errors met.

    ``managers`` are this process's registered managers (the worker's), those of ``setup``.
    """
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    roles = [("reader", setup.reader_threads)] * setup.readers + [("writer", 1)] * setup.writers
    finished = Finished(ctx, setup.readers * setup.reader_threads)
    cap = -(-max_reads // (setup.readers * setup.reader_threads))
    procs = [
        ctx.Process(
            target=_worker,
            args=(role, setup, n, seconds, cap, finished, i, (ready, go, out)),
            daemon=True,
        )
        for i, (role, n) in enumerate(roles)
    ]
    for p in procs:
        p.start()
    history = DbHistory(INITIAL)
    errors: list[str] = []
    try:
        for _ in procs:
            problem = ready.get(timeout=120)
            if problem:
                raise RuntimeError(f"a worker process failed to start:\n{problem}")
        with Barriers(setup.dsn, managers) as barriers:
            go.set()
            for _ in procs:
                _role, group, reads, writes, errs = out.get(timeout=seconds + 120)
                errors += errs
                if _role == "reader":
                    history.add_reads(group, DbReadLog.load(reads))
                history.writes.extend(DbWriteLog.load(writes))
        history.barriers = barriers.log
        errors += barriers.errors
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    for p in procs:
        if p.exitcode != 0:
            errors.append(f"process {p.pid} exited with {p.exitcode}")
    return history, errors
