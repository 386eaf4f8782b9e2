"""Traffic for the staleness checker: readers and writers in threads or in processes.

Readers call two cached functions: ``row(k)`` reads key ``k``'s version from the source of
truth and declares ``row:k`` (sometimes stalling after the read, to widen the race with
writers), ``page(k)`` wraps ``row(k)`` and so depends on ``row:k`` only through its inner
call. Writers increment a key's version and then invalidate ``row:k``. Everything is logged
for :class:`~tests.reliability.checker.History`.

When readers in other processes have an L1, each invalidation also names a tag dependency
``ver:k:v`` (no entry depends on it): its announcement then says which version it follows,
so the checker knows when each reader process's L1 learned about that version.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps
from depcache.backends.redis_backend import RedisCacheBackend
from depcache.testing import reset_managers
from tests.reliability.checker import History, ReadLog, SeenLog, WriteLog

__all__ = [
    "Setup",
    "Traffic",
    "UnguardedRedisBackend",
    "run_processes",
    "run_threads",
    "watch_l1",
]

STALL_PROBABILITY = 0.3  # of a computation stalling after reading the source of truth
STALL_SECONDS = 0.002  # at most
WRITE_PAUSE = 0.004  # a writer sleeps up to this between writes


@dataclass(frozen=True)
class Setup:
    """One configuration: where the cache lives, whether readers have an L1."""

    url: str  # the cache's Redis (a node's URL for a cluster)
    cluster: bool
    l1: bool
    prefix: str
    truth_url: str  # a standalone Redis holding the source of truth for processes
    keys: int = 16
    nested: float = 0.3  # share of reads through page(k) (an outer call over row(k))
    unguarded: bool = False  # negative control: stores skip the stale-set guard
    faults: bool = False  # servers fail meanwhile: reads silent, invalidations retried
    l1_validate: bool = False  # readers' L1 hits are validated with Redis
    #: checked strictly: no allowance for an announcement in flight (a read that started after
    #: an invalidation returned must see it, whatever the readers' L1 heard)
    strict: bool = False

    @property
    def label(self) -> str:
        """E.g. ``cluster-l1``."""
        l1 = ("l1-validated" if self.l1_validate else "l1") if self.l1 else "nol1"
        return f"{'cluster' if self.cluster else 'standalone'}-{l1}"


class UnguardedRedisBackend(RedisCacheBackend):
    """A deliberately broken backend: every store ignores invalidations made meanwhile.

    The negative control: the checker must find stale reads through it.
    """

    def store(
        self,
        key: str,
        value: bytes,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
    ) -> bool:
        """Store unconditionally (what a naive cache-aside does)."""
        return super().store(key, value, ttl, dependencies, None)


def make_manager(setup: Setup, name: str, *, l1: bool) -> depcache.CacheManager:
    """A registered manager of ``setup`` (with an L1 of 1000 entries when ``l1``), ready."""
    config = RedisConfig(
        url=setup.url,
        prefix=setup.prefix,
        cluster=setup.cluster,
        l1_size=1000 if l1 else 0,
        l1_max_age=600,  # so that only invalidations, never age, keep the L1 fresh
        socket_timeout=1.0 if setup.faults else None,
        l1_validate=setup.l1_validate,
    )
    backend = UnguardedRedisBackend(config) if setup.unguarded else None
    manager = depcache.get_or_create_cache_manager(name, config=config, backend=backend)
    if manager._listener is not None and not manager._listener.subscribed.wait(30):
        raise RuntimeError(f"the L1 of {name} did not subscribe within 30 s")
    return manager


def cached_functions(
    manager: depcache.CacheManager, read_truth: Callable[[int], int], silent: bool = False
) -> tuple[Callable[[int], int], Callable[[int], tuple[str, int]]]:
    """``row`` and ``page`` over ``read_truth``, cached by ``manager``."""

    @cache_with_deps(cache_manager=manager, ttl=600, silent_backend_errors=silent)
    def row(key: int) -> int:
        value = read_truth(key)
        if random.random() < STALL_PROBABILITY:
            time.sleep(random.random() * STALL_SECONDS)  # a writer may overtake us here
        add_dependency(f"row:{key}")  # declared after the read, as real code often does
        return value

    @cache_with_deps(cache_manager=manager, ttl=600, silent_backend_errors=silent)
    def page(key: int) -> tuple[str, int]:
        return ("page", row(key))  # depends on row:key through the inner call only

    return row, page


class Finished:
    """Counts reader threads that are done (in one process or across processes), so writers
    stop with them."""

    def __init__(self, ctx: Any, total: int) -> None:
        self.count = ctx.Value("i", 0)
        self.total = total

    def finish(self) -> None:
        """One reader thread is done."""
        with self.count.get_lock():
            self.count.value += 1

    def all(self) -> bool:
        """Whether every reader thread is done."""
        return bool(self.count.value >= self.total)


class Traffic:
    """What one worker (thread or process) did: its logs, and the errors it met."""

    def __init__(self) -> None:
        self.reads = ReadLog()
        self.writes = WriteLog()
        self.errors: list[str] = []


def read_loop(
    setup: Setup,
    row: Callable[[int], int],
    page: Callable[[int], tuple[str, int]],
    deadline: float,
    seed: int,
    out: Traffic,
    max_reads: int,
    finished: Finished,
) -> None:
    """Read random keys through ``row`` and ``page`` until ``deadline`` or ``max_reads``."""
    rng = random.Random(seed)
    log = out.reads
    keys = setup.keys
    clock = time.monotonic
    try:
        while clock() < deadline and len(log) < max_reads:
            key = rng.randrange(keys)
            nested = rng.random() < setup.nested
            start = clock()
            version = page(key)[1] if nested else row(key)
            log.add(key, start, clock(), version)
    except Exception:
        out.errors.append(traceback.format_exc())
    finally:
        finished.finish()


def write_loop(
    setup: Setup,
    manager: depcache.CacheManager,
    bump: Callable[[int], int],
    deadline: float,
    seed: int,
    out: Traffic,
    finished: Finished,
) -> None:
    """Bump random keys' versions and invalidate them until ``deadline`` or the readers end."""
    rng = random.Random(seed)
    clock = time.monotonic
    try:
        while clock() < deadline and not finished.all():
            key = rng.randrange(setup.keys)
            started = clock()
            version = bump(key)
            deps = [f"row:{key}"]
            if setup.l1:
                deps.append(f"ver:{key}:{version}")
            _invalidate(manager, deps, retry=setup.faults)
            out.writes.add(key, version, started, clock())
            time.sleep(rng.random() * WRITE_PAUSE)
    except Exception:
        out.errors.append(traceback.format_exc())


def _invalidate(manager: depcache.CacheManager, deps: list[str], *, retry: bool) -> None:
    """Invalidate; with ``retry``, until it succeeds (a write is done when it returned)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            manager.invalidate_dependencies(*deps)
            return
        except depcache.BackendError:
            if not retry or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _start(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_threads(
    setup: Setup,
    seconds: float,
    max_reads: int,
    readers: int = 6,
    writers: int = 2,
    seed: int = 0,
) -> tuple[History, list[str]]:
    """Readers and writers as threads of this process, sharing one manager (and its L1).

    Returns the history and the errors the workers met.
    """
    manager = make_manager(setup, setup.prefix, l1=setup.l1)
    truth = [0] * setup.keys
    lock = threading.Lock()

    def read_truth(key: int) -> int:
        with lock:
            return truth[key]

    def bump(key: int) -> int:
        with lock:
            truth[key] += 1
            return truth[key]

    row, page = cached_functions(manager, read_truth, silent=setup.faults)
    deadline = time.monotonic() + seconds
    work = [Traffic() for _ in range(readers + writers)]
    finished = Finished(mp.get_context("spawn"), readers)
    cap = -(-max_reads // readers)
    threads = [
        threading.Thread(
            target=read_loop,
            args=(setup, row, page, deadline, seed + i, work[i], cap, finished),
        )
        for i in range(readers)
    ]
    threads += [
        threading.Thread(
            target=write_loop,
            args=(setup, manager, bump, deadline, seed + readers + i, work[readers + i], finished),
        )
        for i in range(writers)
    ]
    _start(threads)
    history = History()
    for w in work:
        history.add_reads("threads", w.reads)
        history.writes.extend(w.writes)
    return history, [e for w in work for e in w.errors]


def watch_l1(manager: depcache.CacheManager, seen: SeenLog) -> None:
    """Log when this process's L1 applies announcements (tagged ``ver:k:v``) or flushes."""
    l1 = manager.l1
    assert l1 is not None
    invalidate, flush = l1.invalidate, l1.flush

    def logged_invalidate(deps: Iterable[str]) -> int:
        deps = list(deps)
        dropped = invalidate(deps)
        at = time.monotonic()
        for dep in deps:
            if dep.startswith("ver:"):
                _, key, version = dep.split(":")
                seen.see(int(key), int(version), at)
        return dropped

    def logged_flush(*, active: bool) -> None:
        flush(active=active)
        seen.flushed(time.monotonic())

    l1.invalidate = logged_invalidate  # type: ignore[method-assign]
    l1.flush = logged_flush  # type: ignore[method-assign]


def process_worker(
    role: str,
    setup: Setup,
    threads: int,
    seconds: float,
    cap: int,
    finished: Finished,
    seed: int,
    channels: tuple[Any, Any, Any],
) -> None:  # runs in a spawned child process
    """One reader or writer process of :func:`run_processes`."""
    ready, go, out = channels
    reset_managers()
    truth = redis.Redis.from_url(setup.truth_url)
    names = [f"{setup.prefix}:truth:{k}" for k in range(setup.keys)]
    work = [Traffic() for _ in range(threads)]
    seen = SeenLog()
    try:
        manager = make_manager(setup, setup.prefix, l1=setup.l1 and role == "reader")
        if manager.l1 is not None:
            watch_l1(manager, seen)
        row, page = cached_functions(manager, lambda k: int(truth.get(names[k]) or 0))
    except Exception:
        ready.put(traceback.format_exc())
        raise
    ready.put("")
    go.wait(120)
    deadline = time.monotonic() + seconds
    if role == "reader":
        targets = [
            threading.Thread(
                target=read_loop,
                args=(setup, row, page, deadline, seed * 100 + i, work[i], cap, finished),
            )
            for i in range(threads)
        ]
    else:
        targets = [
            threading.Thread(
                target=write_loop,
                args=(
                    setup,
                    manager,
                    lambda k: int(truth.incr(names[k])),
                    deadline,
                    seed * 100 + i,
                    work[i],
                    finished,
                ),
            )
            for i in range(threads)
        ]
    _start(targets)
    reads = ReadLog()
    writes = WriteLog()
    for w in work:
        reads.extend(w.reads)
        writes.extend(w.writes)
    out.put(
        (
            role,
            f"p{seed}",
            reads.dump(),
            writes.dump(),
            seen.dump() if manager.l1 is not None and not setup.strict else None,
            [e for w in work for e in w.errors],
        )
    )
    manager.close()


def run_processes(
    setup: Setup,
    seconds: float,
    max_reads: int,
    readers: int = 3,
    reader_threads: int = 2,
    writers: int = 2,
) -> tuple[History, list[str]]:
    """Reader and writer processes (spawned), all started together once every L1 listens."""
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    roles = [("reader", reader_threads)] * readers + [("writer", 1)] * writers
    finished = Finished(ctx, readers * reader_threads)
    cap = -(-max_reads // (readers * reader_threads))
    procs = [
        ctx.Process(
            target=process_worker,
            args=(role, setup, n, seconds, cap, finished, i, (ready, go, out)),
            daemon=True,
        )
        for i, (role, n) in enumerate(roles)
    ]
    for p in procs:
        p.start()
    history = History()
    errors: list[str] = []
    try:
        for _ in procs:
            problem = ready.get(timeout=120)
            if problem:
                raise RuntimeError(f"a worker process failed to start:\n{problem}")
        go.set()
        for _ in procs:
            _role, group, reads, writes, seen, errs = out.get(timeout=seconds + 120)
            errors += errs
            history.add_reads(group, ReadLog.load(reads))
            history.writes.extend(WriteLog.load(writes))
            if seen is not None:
                history.add_seen(group, SeenLog.load(seen))
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    for p in procs:
        if p.exitcode != 0:
            errors.append(f"process {p.pid} exited with {p.exitcode}")
    return history, errors
