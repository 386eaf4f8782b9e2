#!/usr/bin/env python
"""L1 benchmark: depcache's in-process cache against a Redis hit and in-process caches, and
how fast an invalidation reaches another process's L1.

    python -m bench.bench_l1 [--redis-url URL] [--quick] [--json out.json] [--markdown [PATH]]

1. Per-call time of a cache hit, in one run, served by:
   * depcache from its L1 (``RedisConfig(l1_size=10000)``; measured once the L1's
     subscription is confirmed),
   * depcache from Redis (``l1_size=0``),
   * raw redis-py (GET + orjson decode),
   * ``cachetools.cached(cachetools.LRUCache(...))``,
   * ``functools.lru_cache``;
   and the ratio of a Redis hit to an L1 hit (issue 4's target: at least 50x).
2. Invalidation propagation: a child process (multiprocessing, spawn) holds an L1-enabled
   manager with a cached entry; this process invalidates the entry's dependency through its own
   manager (same prefix, no L1) and the child reports when the entry left its L1. Latency =
   the child's ``time.monotonic()`` at detection - this process's ``time.monotonic()`` just
   before ``invalidate_dependency`` (CLOCK_MONOTONIC is one clock for every process on Linux).
   Two readers: one that polls ``l1.get(key)`` with ``time.sleep(0)`` between polls (it yields
   the GIL, as a process waiting on I/O does), one that polls in a tight loop (a CPU-bound
   process: the listener thread has to win the GIL from it). p50, p99 and max in ms.

Exit status: 0 when everything ran and every sanity check passed, 3 otherwise (problems are
printed and in the JSON). Missing the 50x target is reported, not an error.
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import cachetools
import redis

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps, current_cache_key

try:
    from bench import _harness as h
except ModuleNotFoundError as exc:  # run as a file: bench is not importable then
    if exc.name != "bench":
        raise
    raise SystemExit("run it from the checkout as a module: python -m bench.bench_l1") from None

from bench._harness import Document, Problem, Table, jdumps, jloads

L1_HIT = "depcache L1 hit"
L1_VALIDATED = "depcache L1 hit, l1_validate"
REDIS_HIT = "depcache Redis hit"
RAW_GET = "redis-py GET + decode"
CACHETOOLS = "cachetools LRUCache"
LRU_CACHE = "functools.lru_cache"
HIT_ROWS = (L1_HIT, L1_VALIDATED, REDIS_HIT, RAW_GET, CACHETOOLS, LRU_CACHE)
TARGET = 50.0  # issue 4: an L1 hit at least 50x faster than a Redis hit

IDLE, BUSY, LOADED = "yielding reader", "busy reader", "reader under load"
READERS = {
    IDLE: "polls l1.get(key) with time.sleep(0) between polls (yields the GIL)",
    BUSY: "polls l1.get(key) in a tight loop (never yields the GIL)",
    LOADED: (
        "polls like the yielding reader while 4 threads of its process call cached functions "
        "as fast as they can (L1 and Redis hits, misses), on a machine whose other core runs "
        "the writer"
    ),
}
LOAD_THREADS = 4
DETECT_TIMEOUT = 3.0  # seconds a child waits for an entry to go before it reports a loss
WARMUP_REPS = 5  # propagation rounds run first and not recorded

L1_SIZE = 10_000
L1_MAX_AGE = 600.0  # longer than the run: an entry ageing out would turn an L1 hit into a miss


def make_value(i: int) -> dict[str, Any]:
    """The small dict every benchmarked function returns (as in bench_core.py)."""
    return {"id": i, "name": f"item-{i}", "price": 12.5, "tags": ["a", "b"], "active": True}


@dataclass(frozen=True)
class Settings:
    repeats: int  # timed repeats per contender (median reported)
    warm_seconds: float  # warmup (and calibration) per contender
    repeat_seconds: float  # target duration of one timed repeat
    count_calls: int  # calls of the untimed pass that counts backend lookups
    propagation_reps: int  # recorded propagation rounds per reader

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if quick:
            return cls(5, 0.05, 0.05, 200, 50)
        return cls(15, 0.3, 0.2, 2_000, 200)


# --------------------------------------------------------------------------------------------
# Hits
# --------------------------------------------------------------------------------------------


@dataclass
class HitRow:
    name: str
    seconds: list[float] = field(default_factory=list)  # per call, one per repeat
    calls_per_repeat: int = 0
    error: str | None = None
    backend_lookups_per_call: float | None = None  # depcache rows: lookups sent to Redis

    @property
    def median(self) -> float | None:
        return h.median(self.seconds)

    @property
    def spread(self) -> float | None:
        return h.spread(self.seconds)


def timed(func: Callable[[int], Any], n: int) -> float:
    """Seconds for n calls of func(1), the garbage collector off."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in repeat(None, n):
            func(1)
        return time.perf_counter() - t0
    finally:
        gc.enable()


class HitBench:
    """The five contenders, each caching the same function of one argument, called with 1."""

    def __init__(self, url: str, prefix: str, settings: Settings) -> None:
        self.url = url
        self.prefix = prefix
        self.settings = settings
        self.calls: dict[str, int] = dict.fromkeys(HIT_ROWS, 0)  # body runs per contender
        self.rows = {name: HitRow(name) for name in HIT_ROWS}
        self.problems: list[str] = []
        self.funcs: dict[str, Callable[[int], Any]] = {}
        self.managers: dict[str, depcache.CacheManager] = {}
        self.client = redis.Redis.from_url(url)

    def problem(self, name: str | None, message: str) -> None:
        text = f"[{name}] {message}" if name else message
        self.problems.append(text)
        if name is not None and self.rows[name].error is None:
            self.rows[name].error = message
        print(f"  PROBLEM {text}", file=sys.stderr, flush=True)

    def _depcache(self, name: str, l1_size: int, validate: bool = False) -> Callable[[int], Any]:
        manager_name = f"{self.prefix}-{'l1' if l1_size else 'redis'}{'v' if validate else ''}"
        config = RedisConfig(
            url=self.url,
            prefix=manager_name,
            l1_size=l1_size,
            l1_max_age=L1_MAX_AGE,
            l1_validate=validate,
        )
        manager = depcache.get_or_create_cache_manager(manager_name, config=config)
        self.managers[name] = manager
        if l1_size:
            listener = manager._listener
            if manager.l1 is None or listener is None:
                raise Problem("l1_size was set but the manager has no L1")
            if not listener.subscribed.wait(5):
                raise Problem("the L1 did not subscribe to the invalidation channel within 5 s")

        @cache_with_deps(cache_manager=manager)
        def target(x: int) -> dict[str, Any]:
            self.calls[name] += 1
            add_dependency("hit-dep")
            return make_value(x)

        return target

    def setup(self) -> None:
        self.funcs[L1_HIT] = self._depcache(L1_HIT, L1_SIZE)
        self.funcs[L1_VALIDATED] = self._depcache(L1_VALIDATED, L1_SIZE, validate=True)
        self.funcs[REDIS_HIT] = self._depcache(REDIS_HIT, 0)

        key, client, loads = f"{self.prefix}-raw:hit", self.client, jloads
        client.set(key, jdumps(make_value(1)), ex=3600)

        def raw_get(x: int) -> Any:
            return loads(client.get(key))

        self.funcs[RAW_GET] = raw_get

        @cachetools.cached(cachetools.LRUCache(maxsize=L1_SIZE))
        def with_cachetools(x: int) -> dict[str, Any]:
            self.calls[CACHETOOLS] += 1
            return make_value(x)

        @functools.lru_cache(maxsize=L1_SIZE)
        def with_lru_cache(x: int) -> dict[str, Any]:
            self.calls[LRU_CACHE] += 1
            return make_value(x)

        self.funcs[CACHETOOLS] = with_cachetools
        self.funcs[LRU_CACHE] = with_lru_cache
        for name, func in self.funcs.items():
            first, second = func(1), func(1)
            if first != make_value(1) or second != make_value(1):
                raise Problem(f"{name} returned {second!r}, expected {make_value(1)!r}")
        for name in (L1_HIT, L1_VALIDATED):
            l1 = self.managers[name].l1
            if l1 is None or len(l1) != 1:
                count = len(l1) if l1 is not None else None
                raise Problem(f"[{name}] the L1 holds {count} entries, not 1")

    def count_lookups(self) -> None:
        """Untimed: how many backend lookups a depcache hit makes (L1: 0, Redis: 1)."""
        n = self.settings.count_calls
        for name in (L1_HIT, REDIS_HIT):
            backend = self.managers[name].backend
            original = backend.lookup
            seen = [0]

            def counting(key: str, original: Any = original, seen: list[int] = seen) -> Any:
                seen[0] += 1
                return original(key)

            backend.lookup = counting  # type: ignore[method-assign]
            try:
                for _ in range(n):
                    self.funcs[name](1)
            finally:
                del backend.lookup  # the class's method again
            self.rows[name].backend_lookups_per_call = seen[0] / n
        l1_lookups = self.rows[L1_HIT].backend_lookups_per_call
        if l1_lookups:
            self.problem(L1_HIT, f"{l1_lookups:g} Redis lookups per call: not served from L1")
        if self.rows[REDIS_HIT].backend_lookups_per_call != 1:
            self.problem(REDIS_HIT, "a hit without L1 did not make exactly one Redis lookup")

    def calibrate(self, func: Callable[[int], Any]) -> int:
        """Warm up for warm_seconds; return calls per timed repeat."""
        s = self.settings
        batch, spent, per_call = 16, 0.0, 0.0
        while spent < s.warm_seconds:
            elapsed = timed(func, batch)
            spent += elapsed
            per_call = elapsed / batch
            batch *= 2
        return max(20, int(s.repeat_seconds / max(per_call, 1e-9)))

    def run(self) -> None:
        self.setup()
        self.count_lookups()
        for name, func in self.funcs.items():
            self.rows[name].calls_per_repeat = self.calibrate(func)
        names = list(self.funcs)
        for rnd in range(self.settings.repeats):
            shift = rnd % len(names)
            for name in names[shift:] + names[:shift]:
                row = self.rows[name]
                row.seconds.append(
                    timed(self.funcs[name], row.calls_per_repeat) / row.calls_per_repeat
                )
        for name, ran in self.calls.items():
            if ran != 1 and name != RAW_GET:
                self.problem(name, f"the function body ran {ran} times (expected once)")
        for row in self.rows.values():
            if row.median:
                print(f"  {row.name:<24} {row.median * 1e6:>12,.3f} us/call", flush=True)

    def ratio(self, name: str, base: str = L1_HIT) -> float | None:
        a, b = self.rows[name].median, self.rows[base].median
        return a / b if a and b else None

    def close(self) -> None:
        for manager in self.managers.values():
            manager.close()
        self.client.close()


# --------------------------------------------------------------------------------------------
# Propagation
# --------------------------------------------------------------------------------------------


def _load(manager: depcache.CacheManager, stop: threading.Event) -> None:
    """Cached calls as fast as they come: L1 hits, Redis hits (another manager) and misses."""
    other = depcache.get_or_create_cache_manager(
        f"{manager.prefix}-load-{threading.get_ident()}",
        config=RedisConfig(
            url=str(getattr(manager.config, "url", "")), prefix=f"{manager.prefix}-load"
        ),
    )

    @cache_with_deps(cache_manager=manager)
    def near(i: int) -> dict[str, Any]:
        add_dependency(f"load:{i}")
        return make_value(i)

    @cache_with_deps(cache_manager=other)
    def far(i: int) -> dict[str, Any]:
        add_dependency(f"load:{i}")
        return make_value(i)

    n = 0
    while not stop.is_set():
        n += 1
        near(n % 200)
        far(n % 200)
        if not n % 50:
            far(100_000 + n)  # a miss now and then


def _wait_gone(l1: Any, key: str, busy: bool) -> float:
    """Poll until ``key`` left ``l1`` (or DETECT_TIMEOUT passed); return when it was seen."""
    deadline = time.monotonic() + DETECT_TIMEOUT
    if busy:
        n = 0
        while l1.get(key) is not None:
            n += 1
            if not n & 0xFFFF and time.monotonic() > deadline:
                break
    else:
        while l1.get(key) is not None and time.monotonic() < deadline:
            time.sleep(0)
    return time.monotonic()


def propagation_child(url: str, prefix: str, conn: Any, reader: str) -> None:
    """Child process: hold entries in an L1, report when each one is gone.

    Protocol: receives an int i (or None to stop); loads item(i) into its L1 and sends
    ("loaded", None); then polls until the entry left the L1 and sends ("gone", monotonic
    time) or, after DETECT_TIMEOUT, ("timeout", monotonic time). ("error", text) on failure.
    """
    config = RedisConfig(url=url, prefix=prefix, l1_size=1_000, l1_max_age=L1_MAX_AGE)
    manager = depcache.get_or_create_cache_manager(f"{prefix}-reader", config=config)
    busy = reader == BUSY
    stop = threading.Event()
    load = [
        threading.Thread(target=_load, args=(manager, stop), daemon=True)
        for _ in range(LOAD_THREADS if reader == LOADED else 0)
    ]
    for thread in load:
        thread.start()
    try:
        l1, listener = manager.l1, manager._listener
        if l1 is None or listener is None or not listener.subscribed.wait(5):
            conn.send(("error", "the child's L1 did not subscribe within 5 s"))
            return
        keys: dict[int, str] = {}

        @cache_with_deps(cache_manager=manager)
        def item(i: int) -> dict[str, Any]:
            add_dependency(f"prop:{i}")
            keys[i] = current_cache_key() or ""
            return make_value(i)

        conn.send(("ready", os.getpid()))
        while True:
            i = conn.recv()
            if i is None:
                return
            item(i)
            key = keys.get(i, "")
            if l1.get(key) is None:
                conn.send(("error", f"item({i}) is not in the child's L1 after loading it"))
                continue
            conn.send(("loaded", None))
            seen = _wait_gone(l1, key, busy)
            conn.send(("gone" if l1.get(key) is None else "timeout", seen))
    except Exception as exc:  # report it to the parent, which records a problem
        conn.send(("error", f"child raised {exc!r}"))
    finally:
        stop.set()
        for thread in load:
            thread.join(10)
        manager.close()


@dataclass
class Propagation:
    reader: str
    latencies: list[float] = field(default_factory=list)  # seconds
    call_seconds: list[float] = field(default_factory=list)  # the invalidate call itself
    timeouts: int = 0
    error: str | None = None

    def pct(self, q: float) -> float | None:
        """Nearest-rank percentile, in seconds."""
        return h.percentile(self.latencies, q)


def run_propagation(url: str, prefix: str, reader: str, reps: int) -> Propagation:
    result = Propagation(reader)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=propagation_child,
        args=(url, prefix, child, reader),
        name=f"dcbench-l1-{reader}",
        daemon=True,
    )
    proc.start()
    child.close()
    writer = depcache.get_or_create_cache_manager(
        f"{prefix}-writer", config=RedisConfig(url=url, prefix=prefix, l1_size=0)
    )

    def receive() -> tuple[str, Any]:
        if not parent.poll(DETECT_TIMEOUT + 30):
            raise Problem("the child process did not answer within 30 s")
        kind, payload = parent.recv()
        if kind == "error":
            raise Problem(str(payload))
        return str(kind), payload

    try:
        kind, _ = receive()
        for i in range(WARMUP_REPS + reps):
            parent.send(i)
            receive()  # loaded
            t0 = time.monotonic()
            removed = writer.invalidate_dependency(f"prop:{i}")
            t1 = time.monotonic()
            kind, seen = receive()
            if removed != 1:
                raise Problem(f"invalidate_dependency removed {removed} entries, expected 1")
            if i < WARMUP_REPS:
                continue
            if kind == "timeout":
                result.timeouts += 1
                continue
            result.latencies.append(seen - t0)
            result.call_seconds.append(t1 - t0)
        parent.send(None)
        proc.join(10)
    except (Problem, OSError, EOFError) as exc:
        result.error = str(exc)
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        parent.close()
        writer.close()
    return result


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def build_document(
    hits: HitBench, props: list[Propagation], meta: dict[str, Any], problems: list[str]
) -> Document:
    doc = Document()
    doc.heading("Hit: L1 against Redis and in-process caches")
    doc.para(
        f"redis {meta['redis_server']} at {meta['redis_url']}, redis-py {meta['redis_py']} "
        f"(hiredis {meta['hiredis'] or 'not installed'}), python {meta['python']}, "
        f"{meta['cpus']} CPUs, decode: {meta['json']}, cachetools {meta['cachetools']}.",
        f"mode: {'quick' if meta['quick'] else 'full'}: {meta['settings']['repeats']} repeats of "
        f"~{meta['settings']['repeat_seconds']} s per contender, interleaved; the median per "
        "call is reported. Every contender caches the same function and is called with the same "
        "argument; the time includes the loop's call overhead (a few tens of ns).",
    )
    table = Table(
        ["cache", "calls/s", "us/call", "+-%", "x L1 hit", "Redis lookups/call"],
        right={1, 2, 3, 4, 5},
    )
    for name in HIT_ROWS:
        row = hits.rows[name]
        med = row.median
        table.add(
            [
                name + (" (ERROR)" if row.error else ""),
                f"{1 / med:,.0f}" if med else "-",
                h.num(med, ",.3f", 1e6),
                h.num(row.spread, ".0f", 100),
                h.num(hits.ratio(name), ".3g"),
                h.num(row.backend_lookups_per_call, "g"),
            ]
        )
    doc.table(table)
    redis_over_l1 = hits.ratio(REDIS_HIT)
    verdict = "" if redis_over_l1 is None else ("ok" if redis_over_l1 >= TARGET else "MISSED")
    doc.para(
        f"Redis hit / L1 hit = {h.num(redis_over_l1, '.1f')}x (issue 4's target: >= "
        f"{TARGET:g}x: {verdict}); redis-py GET + decode / L1 hit = "
        f"{h.num(hits.ratio(RAW_GET), '.1f')}x.",
        f"An L1 hit with l1_validate asks Redis whether the entry is still valid (one round "
        f"trip, no value): {h.num(hits.ratio(L1_VALIDATED, REDIS_HIT), '.2f')}x a Redis hit, "
        f"{h.num(hits.ratio(L1_VALIDATED, RAW_GET), '.2f')}x redis-py GET + decode.",
        f"L1 hit / cachetools = {h.num(hits.ratio(L1_HIT, CACHETOOLS), '.1f')}x; "
        f"L1 hit / lru_cache = {h.num(hits.ratio(L1_HIT, LRU_CACHE), '.1f')}x "
        "(what depcache's decorator, key encoding and call flow cost over a plain in-process "
        "cache).",
    )

    doc.heading("Invalidation propagation to another process's L1")
    doc.para(
        "A child process (spawn) holds an entry in its L1; this process calls "
        "invalidate_dependency through its own manager (same prefix, no L1). latency = the "
        "child's time.monotonic() when the entry is gone from its L1 - this process's "
        "time.monotonic() just before the call; the call itself (Redis round trip, the script "
        "deletes and publishes) is part of it. "
        f"{WARMUP_REPS} warm-up rounds first; percentiles are nearest-rank values.",
    )
    ptable = Table(
        [
            "reader",
            "samples",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "min ms",
            "call p50 ms",
            "lost",
        ],
        right={1, 2, 3, 4, 5, 6, 7, 8},
    )
    for p in props:
        call_p50 = h.median(p.call_seconds)
        ptable.add(
            [
                p.reader + (" (ERROR)" if p.error else ""),
                str(len(p.latencies)),
                h.num(p.pct(0.5), ".3f", 1e3),
                h.num(p.pct(0.9), ".3f", 1e3),
                h.num(p.pct(0.99), ".3f", 1e3),
                h.num(max(p.latencies) if p.latencies else None, ".3f", 1e3),
                h.num(min(p.latencies) if p.latencies else None, ".3f", 1e3),
                h.num(call_p50, ".3f", 1e3),
                str(p.timeouts),
            ]
        )
    doc.table(ptable)
    doc.para(
        *(f"{name}: {text}." for name, text in READERS.items()),
        "call p50 = how long invalidate_dependency took in this process; lost = entries "
        f"still in the child's L1 after {DETECT_TIMEOUT:g} s.",
    )
    if problems:
        doc.heading("PROBLEMS (these measurements are not valid)")
        doc.pre([f"- {problem}" for problem in problems])
    return doc


def to_json(
    hits: HitBench, props: list[Propagation], meta: dict[str, Any], problems: list[str]
) -> dict[str, Any]:
    redis_over_l1 = hits.ratio(REDIS_HIT)
    return {
        "meta": meta,
        "hits": [
            {
                "name": row.name,
                "seconds_per_call_median": row.median,
                "calls_per_sec": 1 / row.median if row.median else None,
                "seconds_per_call_repeats": row.seconds,
                "calls_per_repeat": row.calls_per_repeat,
                "spread": row.spread,
                "ratio_to_l1_hit": hits.ratio(row.name),
                "backend_lookups_per_call": row.backend_lookups_per_call,
                "error": row.error,
            }
            for row in hits.rows.values()
        ],
        "ratios": {
            "redis_hit_over_l1_hit": redis_over_l1,
            "target": TARGET,
            "target_met": None if redis_over_l1 is None else redis_over_l1 >= TARGET,
            "redis_py_get_over_l1_hit": hits.ratio(RAW_GET),
            "l1_hit_over_cachetools": hits.ratio(L1_HIT, CACHETOOLS),
            "l1_hit_over_lru_cache": hits.ratio(L1_HIT, LRU_CACHE),
        },
        "propagation": [
            {
                "reader": p.reader,
                "description": READERS[p.reader],
                "samples": len(p.latencies),
                "p50_ms": h.ms(p.pct(0.5)),
                "p90_ms": h.ms(p.pct(0.9)),
                "p99_ms": h.ms(p.pct(0.99)),
                "max_ms": h.ms(max(p.latencies) if p.latencies else None),
                "min_ms": h.ms(min(p.latencies) if p.latencies else None),
                "call_p50_ms": h.ms(h.median(p.call_seconds)),
                "timeouts": p.timeouts,
                "latencies_ms": [round(x * 1e3, 4) for x in p.latencies],
                "error": p.error,
            }
            for p in props
        ],
        "problems": problems,
    }


def cleanup(url: str, prefix: str) -> int:
    removed = 0
    with redis.Redis.from_url(url) as admin:
        keys: list[bytes] = []
        for key in admin.scan_iter(match=f"{prefix}-*", count=1_000):
            keys.append(key)
            if len(keys) >= 1_000:
                removed += int(admin.unlink(*keys))
                keys = []
        if keys:
            removed += int(admin.unlink(*keys))
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    h.redis_url_option(parser)
    args = parser.parse_args(argv)
    settings = Settings.for_mode(args.quick)
    url: str = args.redis_url
    prefix = f"dcbench-l1-{uuid.uuid4().hex[:10]}"
    t0 = time.perf_counter()
    print(f"L1 benchmark ({'quick' if args.quick else 'full'}), key prefix {prefix}-*", flush=True)

    with redis.Redis.from_url(url) as admin:
        server = admin.info("server")
    hits = HitBench(url, prefix, settings)
    props: list[Propagation] = []
    problems: list[str] = []
    try:
        print(f"hits  (t={time.perf_counter() - t0:.1f} s)", flush=True)
        try:
            hits.run()
        except Exception as exc:
            hits.problem(None, f"hit benchmark raised {exc!r}")
            traceback.print_exc()
        finally:
            hits.close()
        for n, reader in enumerate(READERS):
            print(f"propagation, {reader}  (t={time.perf_counter() - t0:.1f} s)", flush=True)
            result = run_propagation(url, f"{prefix}-p{n}", reader, settings.propagation_reps)
            props.append(result)
            if result.error:
                problems.append(f"[propagation, {reader}] {result.error}")
            elif result.timeouts:
                problems.append(
                    f"[propagation, {reader}] {result.timeouts} entries were still in the "
                    f"child's L1 {DETECT_TIMEOUT:g} s after their invalidation"
                )
            p50 = result.pct(0.5)
            if p50 is not None:
                print(f"  p50 {p50 * 1e3:.3f} ms over {len(result.latencies)}", flush=True)
    finally:
        removed = cleanup(url, prefix)
    problems = hits.problems + problems
    meta = h.environment(quick=args.quick, redis_url=url)
    meta.update(
        {
            "redis_server": server.get("redis_version"),
            "redis_py": redis.__version__,
            "hiredis": h.version("hiredis"),
            "cachetools": h.version("cachetools"),
            "switch_interval_s": sys.getswitchinterval(),
            "settings": settings.__dict__,
            "l1_size": L1_SIZE,
            "l1_max_age": L1_MAX_AGE,
            "run_prefix": prefix,
            "cleaned_keys": removed,
            "elapsed_seconds": round(time.perf_counter() - t0, 1),
        }
    )
    doc = build_document(hits, props, meta, problems)
    h.publish(
        doc,
        args,
        to_json(hits, props, meta, problems),
        script="bench_l1.py",
        default_markdown=h.RESULTS / "l1.md",
    )
    print(f"{meta['elapsed_seconds']} s; removed {removed} keys under {prefix}-*")
    return 3 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
