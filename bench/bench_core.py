#!/usr/bin/env python
"""Side-by-side benchmark: depcache vs simple-dep-cache vs raw redis-py.

    python -m bench.bench_core [--redis-url URL] [--quick] [--json out.json] [--no-cluster]
                                [--markdown [PATH]] [--chart PATH]

Measures, in one run and against one Redis server:

* ``hit``         a decorated function returning a small dict that is already cached
                  (raw baseline: GET + JSON decode);
* ``miss+store``  a decorated call with a new argument (a miss) whose function adds k = 1, 5, 20
                  dependencies (raw baseline: pipelined SET + k x SADD, transaction=False; a second
                  raw row, ``redis-py:cache-aside``, adds the GET that finds the miss);
* ``invalidate``  invalidating one dependency that N = 10, 1,000, 10,000 entries depend on
                  (raw baseline: SMEMBERS + DEL of the members + DEL of the set).

For each it prints ops/s (median of several repeats), the ratio of time per operation to raw
redis-py's, and the Redis commands per operation: what this process sent (counted in redis-py),
what the server ran for it including inside Lua scripts (MONITOR), and the ``INFO commandstats``
delta (every client).  See bench/README.md for what every column means.

The cluster column (``--cluster``, on by default when redis-server and redis-cli are installed)
starts a throw-away 3-master Redis Cluster (``tests/support/servers.py``) and measures depcache
on it against raw redis-py's ``RedisCluster`` for hit, miss+store k=5 and invalidate
N=10,000, then prints what a cluster costs against standalone.

Exit status: 0 when every measurement ran and every sanity check passed, 2 when a library cannot
be imported, 3 when a library raised or misbehaved (the problems are printed and in the JSON).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import math
import shutil
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import redis
import redis.cluster
import redis.connection

try:
    from bench import _harness as h
except ModuleNotFoundError as exc:  # run as a file: bench is not importable then
    if exc.name != "bench":
        raise
    raise SystemExit("run it from the checkout as a module: python -m bench.bench_core") from None

from bench._harness import JSON_LIB, Document, Problem, Table, jdumps, jloads, timed_loop

RAW = "redis-py"
RAW_ASIDE = "redis-py:cache-aside"
SDC = "simple-dep-cache"
DC = "depcache"
LIBRARIES = (RAW, SDC, DC)

# The targets of issue 2 (time per op / raw redis-py's time per op), and what simple-dep-cache
# measured on the development machine when the issue was written.
TARGETS: dict[str, float] = {"hit": 1.15, "miss+store k=5": 1.3, "invalidate N=10000": 1.2}
ISSUE_SDC_REFERENCE = {"hit": 1.22, "miss+store k=5": 10.4, "invalidate N=10000": 1.37}

MISS_KS = (1, 5, 20)
INVALIDATION_NS = (10, 1_000, 10_000)


def make_value(i: int) -> dict[str, Any]:
    """The small dict every benchmarked function returns."""
    return {"id": i, "name": f"item-{i}", "price": 12.5, "tags": ["a", "b"], "active": True}


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    repeats: int  # timed repeats of each hit / miss measurement (median reported)
    warm_seconds: float  # warmup (and calibration) time per measurement
    repeat_seconds: float  # target duration of one timed repeat
    max_ops: int  # cap on operations per repeat
    count_ops: int  # operations in the untimed command-counting pass
    inval_rounds: int  # timed invalidation rounds (after a warmup and a counting round)
    inval_budget: int  # entries per dependency size per round: B = budget // N deps invalidated
    inval_max_deps: int  # cap on B
    memory_entries: int  # entries per k in the memory measurement

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if quick:
            return cls(3, 0.03, 0.06, 20_000, 30, 1, 2_000, 20, 300)
        return cls(15, 0.2, 0.15, 500_000, 200, 7, 10_000, 100, 3_000)


# --------------------------------------------------------------------------------------------
# Command counting (untimed passes only)
#
# client side: what redis-py in this process packs and sends (commands, socket writes);
# server side: MONITOR lines from this process's connections plus the lines of the Lua scripts
#              they called, so other clients of a busy server do not count; without MONITOR
#              (e.g. forbidden by an ACL) the INFO commandstats delta, which counts every client.
# The INFO commandstats delta is recorded in any case.
# --------------------------------------------------------------------------------------------

_SUBCOMMANDS = {
    "script",
    "client",
    "config",
    "object",
    "memory",
    "function",
    "cluster",
    "xinfo",
    "command",
}
_SCRIPT_CALLS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _command_name(words: list[str]) -> str:
    name = words[0].lower()
    if name in _SUBCOMMANDS and len(words) > 1:
        return f"{name}|{words[1].lower()}"
    return name


def _packed_name(args: tuple[Any, ...]) -> str:
    words = _text(args[0]).split()
    if len(words) == 1 and len(args) > 1:
        words.append(_text(args[1]))
    return _command_name(words)


def _resp_names(payload: Any) -> list[str]:
    """The names of the commands in RESP bytes (what a client writes)."""
    if isinstance(payload, bytes | bytearray):
        payload = [payload]
    data = b"".join(bytes(part) for part in payload or ())
    names, at = [], 0
    while data.startswith(b"*", at):
        end = data.index(b"\r\n", at)
        count = int(data[at + 1 : end])
        at = end + 2
        words = []
        for _ in range(count):
            end = data.index(b"\r\n", at)
            size = int(data[at + 1 : end])
            words.append(data[end + 2 : end + 2 + size].decode("utf-8", "replace"))
            at = end + 2 + size + 2
        names.append(_command_name(words[:2]) if words else "?")
    return names


class ClientCounter:
    """Counts the commands, the socket writes and the round trips redis-py makes in this
    process, and notes the local ports of the connections used (to find them in MONITOR's
    output).

    A round trip is a wait for replies: a write made while no earlier write of this thread
    awaits its reply starts one; reading a reply ends it. A cluster pipeline that writes to
    three nodes and then reads their replies is 3 writes and 1 round trip.

    Patches redis-py's command packers and the connection's ``send_packed_command`` and
    ``read_response`` while active.
    """

    def __init__(self) -> None:
        self.commands: Counter[str] = Counter()
        self.writes = 0
        self.rounds = 0
        self._waiting = False  # a write of the counting thread awaits its reply
        self._thread = threading.get_ident()
        self.ports: set[str] = set()
        self.unattributable = False  # a connection without a TCP port (unix socket)
        self._undo: list[Callable[[], None]] = []
        self._packed = False  # redis-py packed (and counted) what is sent next

    def _patch(self, cls: type, name: str, make: Callable[[Any], Any]) -> None:
        own = cls.__dict__[name]
        setattr(cls, name, make(own))
        self._undo.append(lambda: setattr(cls, name, own))

    def __enter__(self) -> ClientCounter:
        counter = self

        def count_pack(orig: Any) -> Any:
            def pack(self: Any, *args: Any) -> Any:
                counter.commands[_packed_name(args)] += 1
                counter._packed = True
                return orig(self, *args)

            return pack

        def count_send(orig: Any) -> Any:
            def send_packed_command(self: Any, *args: Any, **kwargs: Any) -> Any:
                counter.writes += 1
                if not counter._waiting and threading.get_ident() == counter._thread:
                    counter.rounds += 1
                    counter._waiting = True
                if not counter._packed:  # packed by depcache itself (its hit and cluster paths)
                    for name in _resp_names(args[0] if args else kwargs.get("command")):
                        counter.commands[name] += 1
                counter._packed = False
                result = orig(self, *args, **kwargs)
                try:
                    address = self._sock.getsockname()
                except (AttributeError, OSError):
                    address = None
                if isinstance(address, tuple):
                    counter.ports.add(str(address[1]))
                else:
                    counter.unattributable = True
                return result

            return send_packed_command

        def count_read(orig: Any) -> Any:
            def read_response(self: Any, *args: Any, **kwargs: Any) -> Any:
                if threading.get_ident() == counter._thread:
                    counter._waiting = False
                return orig(self, *args, **kwargs)

            return read_response

        for cls_name in ("PythonRespSerializer", "HiredisRespSerializer"):
            cls = getattr(redis.connection, cls_name, None)
            if cls is not None and "pack" in cls.__dict__:
                self._patch(cls, "pack", count_pack)
        # patch the one class that defines it, so that it is counted once
        for conn_cls in redis.connection.Connection.__mro__:
            if "send_packed_command" in conn_cls.__dict__:
                self._patch(conn_cls, "send_packed_command", count_send)
                break
        for conn_cls in redis.connection.Connection.__mro__:
            if "read_response" in conn_cls.__dict__:
                self._patch(conn_cls, "read_response", count_read)
                break
        return self

    def __exit__(self, *exc: object) -> None:
        while self._undo:
            self._undo.pop()()


def server_commandstats(admin: redis.Redis) -> Counter[str]:
    info = admin.info("commandstats")
    return Counter(
        {key.removeprefix("cmdstat_"): int(value["calls"]) for key, value in info.items()}
    )


class Monitor:
    """Reads MONITOR's output for one counting pass (after the pass: Redis buffers it)."""

    def __init__(self, admin: redis.Redis, probe_key: str) -> None:
        self.admin = admin
        self.available = True
        self.lua_after_call = True  # Redis 7.0 prints a script's commands after its EVALSHA
        self.error: str | None = None
        self.overhead: Counter[str] = Counter()  # commands a session itself adds to commandstats
        try:
            # what a session adds to commandstats: its connection's handshake, MONITOR, ECHO
            # (the least of three tries, and only those commands: others may be busy)
            for attempt in range(3):
                before = server_commandstats(admin)
                with self.session():
                    pass
                delta = server_commandstats(admin) - before
                own = Counter(
                    {
                        name: n
                        for name, n in delta.items()
                        if name in ("hello", "monitor", "echo", "auth", "select")
                        or name.startswith("client|")
                    }
                )
                self.overhead = own if attempt == 0 else self.overhead & own
            # which comes first: a script call's line, or the lines of the commands it ran?
            # (identified by a unique key: other clients may be running scripts meanwhile)
            with self.session() as lines:
                admin.eval("return redis.call('EXISTS', KEYS[1])", 1, probe_key)
            call = [
                n
                for n, line in enumerate(lines)
                if line["client_type"] != "lua" and probe_key in line["command"]
            ]
            inner = [
                n
                for n, line in enumerate(lines)
                if line["client_type"] == "lua" and probe_key in line["command"]
            ]
            if len(call) != 1 or len(inner) != 1 or abs(call[0] - inner[0]) != 1:
                raise RuntimeError(f"unexpected MONITOR output {lines[:20]!r}")
            self.lua_after_call = inner[0] > call[0]
        except Exception as exc:  # no MONITOR: fall back to commandstats
            self.available, self.error = False, f"{type(exc).__name__}: {exc}"

    @classmethod
    def unavailable(cls, admin: redis.Redis, reason: str) -> Monitor:
        """A Monitor that is not used: counting falls back to INFO commandstats."""
        monitor = cls.__new__(cls)
        monitor.admin, monitor.available, monitor.lua_after_call = admin, False, True
        monitor.error, monitor.overhead = reason, Counter()
        return monitor

    @contextmanager
    def session(self) -> Iterator[list[dict[str, Any]]]:
        lines: list[dict[str, Any]] = []
        monitor = self.admin.monitor()  # type: ignore[no-untyped-call]
        monitor.__enter__()
        try:
            yield lines
            token = f"dcbench-monitor-end-{uuid.uuid4().hex}"
            self.admin.echo(token)
            while True:
                line = monitor.next_command()
                if token in line["command"]:
                    break
                lines.append(line)
        finally:
            monitor.__exit__()

    def attribute(
        self, lines: list[dict[str, Any]], ports: set[str]
    ) -> tuple[Counter[str], Counter[str], int]:
        """(commands our connections sent, commands our scripts ran, lines of other clients)."""
        own: Counter[str] = Counter()
        scripts: Counter[str] = Counter()
        others = 0
        pending: list[str] = []  # script lines waiting for their call (when printed before it)
        last_call_ours = False
        for line in lines:
            name = _command_name(line["command"].split(" ", 2) or ["?"])
            if line["client_type"] == "lua":
                if not self.lua_after_call:
                    pending.append(name)
                elif last_call_ours:
                    scripts[name] += 1
                else:
                    others += 1
                continue
            ours = line["client_port"] in ports
            is_call = name in _SCRIPT_CALLS
            if ours:
                own[name] += 1
            else:
                others += 1
            if self.lua_after_call:
                last_call_ours = ours and is_call
            else:
                if ours and is_call:
                    scripts.update(pending)
                else:
                    others += len(pending)
                pending = []
        return own, scripts, others + len(pending)


@dataclass
class CommandCount:
    ops: int = 0
    seconds: float = 0.0  # length of the counting windows
    writes: int = 0  # socket writes
    rounds: int = 0  # round trips (waits for replies; see ClientCounter)
    client: Counter[str] = field(default_factory=Counter)  # packed by redis-py here
    server: Counter[str] = field(default_factory=Counter)  # run by the server for us
    scripts: Counter[str] = field(default_factory=Counter)  # the part of server run in scripts
    commandstats: Counter[str] = field(default_factory=Counter)  # INFO delta, all clients
    others: int = 0  # commands of other clients seen by MONITOR in the windows
    commandstats_reset: bool = False  # the counters went down during a pass: delta unusable
    source: str = ""  # "monitor" or "commandstats"

    def per_op(self, counter: Counter[str]) -> dict[str, float]:
        if not self.ops:
            return {}
        return {name: round(n / self.ops, 3) for name, n in sorted(counter.items()) if n}

    def total_per_op(self, counter: Counter[str]) -> float | None:
        return round(sum(counter.values()) / self.ops, 3) if self.ops else None


# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def timed_calls(op: Callable[[str], int], args: list[str]) -> tuple[float, list[int]]:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        results = [op(a) for a in args]
        return time.perf_counter() - t0, results
    finally:
        gc.enable()


class Indexes:
    """Hands out fresh argument ranges so that miss iterations never repeat an argument."""

    def __init__(self) -> None:
        self._next = 1_000_000

    def take(self, n: int) -> int:
        start = self._next
        self._next += n
        return start


# --------------------------------------------------------------------------------------------
# The three contenders
# --------------------------------------------------------------------------------------------


class RawRedis:
    name = RAW

    def __init__(self, url: str, prefix: str, ttl: int | None) -> None:
        self.r: Any = self.connect(url)
        self.p = prefix
        self.ttl = ttl

    def connect(self, url: str) -> Any:
        return redis.Redis.from_url(url)

    def pipeline(self) -> Any:
        return self.r.pipeline(transaction=False)

    def hit_op(self, spread: int = 1) -> Callable[[int], Any]:
        """GET + decode of one key; with ``spread`` > 1, of ``spread`` keys in turn."""
        r, loads = self.r, jloads
        if spread == 1:
            key = f"{self.p}:hit"
            r.set(key, jdumps(make_value(1)), ex=self.ttl)

            def op(i: int) -> Any:
                return loads(r.get(key))

            if op(0) != make_value(1):
                raise Problem("raw hit returned a different value")
            return op
        keys = [f"{self.p}:hit:{j}" for j in range(spread)]
        for j, key in enumerate(keys):
            r.set(key, jdumps(make_value(j)), ex=self.ttl)

        def spread_op(i: int) -> Any:
            return loads(r.get(keys[i % spread]))

        if [spread_op(j) for j in range(spread)] != [make_value(j) for j in range(spread)]:
            raise Problem("raw hit returned a different value")
        return spread_op

    def miss_op(self, k: int, *, aside: bool) -> Callable[[int], Any]:
        p, r, ttl, dumps, pipeline = self.p, self.r, self.ttl, jdumps, self.pipeline
        deps = [f"{p}:d:k{k}:{j}" for j in range(k)]
        kind = "a" if aside else "m"

        def op(i: int) -> Any:
            key = f"{p}:{kind}{k}:{i}"
            if aside and r.get(key) is not None:
                raise Problem(f"raw cache-aside found {key}")
            value = make_value(i)
            pipe = pipeline()
            pipe.set(key, dumps(value), ex=ttl)
            for dep in deps:
                pipe.sadd(dep, key)
            pipe.execute()
            return value

        return op

    def populate(self, entries: dict[str, list[str]]) -> None:
        pipe = self.pipeline()
        for dep, keys in entries.items():
            for n, key in enumerate(keys):
                full = f"{self.p}:{key}"
                pipe.set(full, jdumps(make_value(n)), ex=self.ttl)
                pipe.sadd(f"{self.p}:d:{dep}", full)
                if len(pipe) >= 2_000:
                    pipe.execute()
                    pipe = self.pipeline()
        pipe.execute()

    def invalidate_op(self) -> Callable[[str], int]:
        r, p = self.r, self.p

        def op(dep: str) -> int:
            dep_key = f"{p}:d:{dep}"
            members = r.smembers(dep_key)
            if not members:
                return 0
            pipe = r.pipeline(transaction=False)
            pipe.delete(*members)
            pipe.delete(dep_key)
            removed: int = pipe.execute()[0]
            return removed

        return op

    def exists(self, key: str) -> bool:
        return bool(self.r.exists(f"{self.p}:{key}"))

    def close(self) -> None:
        self.r.close()


class RawCluster(RawRedis):
    """The same work with redis-py's RedisCluster: the k SADDs of a miss (and the DELs of an
    invalidation) name keys in different slots, so they go in one ClusterPipeline, which
    sends each node its commands and then reads the replies (one round trip per node)."""

    def connect(self, url: str) -> Any:
        return redis.cluster.RedisCluster.from_url(url)

    def pipeline(self) -> Any:
        return self.r.pipeline()

    def invalidate_op(self) -> Callable[[str], int]:
        r, p = self.r, self.p

        def op(dep: str) -> int:
            dep_key = f"{p}:d:{dep}"
            members = r.smembers(dep_key)
            if not members:
                return 0
            pipe = r.pipeline()
            for member in members:  # a cluster pipeline takes one key per DEL
                pipe.delete(member)
            pipe.delete(dep_key)
            removed: int = sum(pipe.execute()[:-1])
            return removed

        return op


class DecoratorLibrary:
    """simple-dep-cache and depcache share a seed API: one adapter drives both."""

    name: str
    ttl: int | None
    manager_name: str

    def __init__(self, module: Any, manager: Any) -> None:
        self.lib = module
        self.manager = manager
        self.calls = 0  # how many times a decorated body ran (== misses)

    def decorate(self, func: Callable[..., Any]) -> Callable[..., Any]:
        deco: Callable[..., Any] = self.lib.cache_with_deps(name=self.manager_name, ttl=self.ttl)
        return deco(func)  # type: ignore[no-any-return]

    def hit_op(self, spread: int = 1) -> Callable[[int], Any]:
        """A cached f(1); with ``spread`` > 1, f(0) ... f(spread - 1) in turn."""
        add = self.lib.add_dependency

        def hit_target(x: int) -> dict[str, Any]:
            self.calls += 1
            add("hit-dep")
            return make_value(x)

        cached = self.decorate(hit_target)
        args = [1] if spread == 1 else list(range(spread))
        for x in args:
            first = cached(x)
            second = cached(x)
            if first != make_value(x) or second != make_value(x):
                raise Problem(f"{self.name}: hit returned {second!r}, expected {make_value(x)!r}")
        if self.calls != len(args):
            raise Problem(f"{self.name}: second calls were not hits ({self.calls} calls)")
        if spread == 1:

            def op(i: int) -> Any:
                return cached(1)

            return op

        def spread_op(i: int) -> Any:
            return cached(i % spread)

        return spread_op

    def miss_op(self, k: int) -> Callable[[int], Any]:
        add = self.lib.add_dependency
        deps = [f"k{k}:{j}" for j in range(k)]

        def miss_target(i: int) -> dict[str, Any]:
            self.calls += 1
            for dep in deps:
                add(dep)
            return make_value(i)

        cached: Callable[[int], Any] = self.decorate(miss_target)
        return cached

    def populate(self, entries: dict[str, list[str]]) -> None:
        """Store the entries through the manager's public set() (untimed set-up)."""
        manager, ttl = self.manager, self.ttl
        for dep, keys in entries.items():
            deps = {dep}
            for n, key in enumerate(keys):
                manager.set(key, make_value(n), ttl=ttl, dependencies=deps)

    def invalidate_op(self) -> Callable[[str], int]:
        op: Callable[[str], int] = self.manager.invalidate_dependency
        return op

    def exists(self, key: str) -> bool:
        return bool(self.manager.exists(key))

    def close(self) -> None:
        backend = getattr(self.manager, "backend", None)
        client = getattr(backend, "redis", None) or getattr(backend, "_redis", None)
        close = getattr(client, "close", None)
        if callable(close):
            close()


class SimpleDepCache(DecoratorLibrary):
    def populate(self, entries: dict[str, list[str]]) -> None:
        """Write exactly what simple-dep-cache's set() writes (SETEX entry, SADD to the
        dependency set, EXPIRE the set), with its own key functions and serializer, but
        pipelined: its set() costs 3-4 round trips per entry, which made set-up dominate the run.
        A sample is read back through the manager to prove the layout."""
        backend, ttl = self.manager.backend, self.ttl
        dump = backend.serializer.dump
        pipe = backend.redis.pipeline(transaction=False)
        for dep, keys in entries.items():
            dep_key = backend._deps_key(dep)
            for n, key in enumerate(keys):
                cache_key = backend._cache_key(key)
                pipe.set(cache_key, dump(make_value(n)), ex=ttl)
                pipe.sadd(dep_key, cache_key)
                if len(pipe) >= 2_000:
                    pipe.execute()
            if ttl:
                pipe.expire(dep_key, ttl)
        pipe.execute()
        for keys in entries.values():
            if self.manager.get(keys[-1]) != make_value(len(keys) - 1):
                raise Problem("simple-dep-cache did not read back a populated entry")


class DepcacheCluster(DecoratorLibrary):
    def populate(self, entries: dict[str, list[str]]) -> None:
        """Store the entries with depcache's own cluster store protocol (placeholder, index
        script per dependency, commit: what ``manager.set`` runs), but many entries at once:
        their steps go out together, one cluster pipeline per step for up to 500 entries.
        One at a time, the three round trips per entry made set-up dominate the run."""
        manager, backend = self.manager, self.manager.backend
        batch: list[Any] = []
        for dep, keys in entries.items():
            for n, key in enumerate(keys):
                blob, deps = manager._encode(make_value(n), {dep})
                batch.append(backend.protocol.store(key, blob, self.ttl, deps, None, True))
                if len(batch) >= 500:
                    run_protocols_together(backend._runner_now(), batch)
                    batch = []
        run_protocols_together(backend._runner_now(), batch)
        for keys in entries.values():
            if manager.get(keys[-1]) != make_value(len(keys) - 1):
                raise Problem("depcache did not read back a populated cluster entry")


MEMORY_KS = (1, 5)


def measure_memory(
    url: str, prefix: str, entries: int, *, cluster_nodes: list[str] | None = None
) -> list[dict[str, Any]]:
    """Bytes per cached entry (``MEMORY USAGE`` of every key, summed), depcache against raw
    redis-py's ``SET`` + one ``SADD`` per dependency, with k distinct dependencies per entry
    (the bench's miss: no dependency shared), the same value and keys of the same length
    (depcache's entry keys, under another prefix). ``cluster_nodes``: the URLs of a cluster's
    masters (then depcache runs with ``cluster=True``, the raw writes go through
    ``RedisCluster`` and every master's keys are summed)."""
    import depcache  # noqa: PLC0415 - optional: --libs can leave it out

    cluster = cluster_nodes is not None
    writer: Any = redis.cluster.RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)
    admins = [redis.Redis.from_url(node) for node in cluster_nodes or [url]]
    rows = []
    try:
        for k in MEMORY_KS:
            raw_prefix, dc_prefix = f"{prefix}-mem-ra{k}", f"{prefix}-mem-dc{k}"
            options: dict[str, Any] = {"url": url, "prefix": dc_prefix, "l1_size": 0}
            if cluster:
                options["cluster"] = True
            manager = depcache.get_or_create_cache_manager(
                dc_prefix, config=depcache.RedisConfig(**options)
            )

            keys: dict[int, str] = {}

            def user_profile(
                i: int, k: int = k, keys: dict[int, str] = keys, raw: str = raw_prefix
            ) -> dict[str, Any]:
                keys[i] = f"{raw}:k:{depcache.current_cache_key()}"
                for j in range(k):
                    depcache.add_dependency(f"{i}:{j}")
                return make_value(i)

            # keyed as a module-level function of an app would be (the length of the names an
            # index holds decides its encoding; see the table's note)
            user_profile.__qualname__ = "user_profile"
            target = depcache.cache_with_deps(cache_manager=manager, ttl=3600)(user_profile)
            for i in range(entries):
                target(i)
            manager.close()
            pipe = writer.pipeline() if cluster else writer.pipeline(transaction=False)
            for i, key in keys.items():
                pipe.set(key, jdumps(make_value(i)), ex=3600)
                for j in range(k):
                    pipe.sadd(f"{raw_prefix}:d:{{{i}:{j}}}:i", key)
            pipe.execute()
            sizes = {}
            for name, pattern in (("raw", raw_prefix), ("depcache", dc_prefix)):
                total = 0
                for admin in admins:
                    found = list(admin.scan_iter(match=f"{pattern}:*", count=1000))
                    pipe = admin.pipeline(transaction=False)
                    for key in found:
                        pipe.memory_usage(key, samples=0)
                    total += sum(int(n or 0) for n in pipe.execute())
                    pipe = admin.pipeline(transaction=False)
                    for key in found:  # one key per UNLINK: a cluster's keys span slots
                        pipe.unlink(key)
                    pipe.execute()
                sizes[name] = total / entries
            rows.append(
                {
                    "k": k,
                    "raw_bytes": round(sizes["raw"]),
                    "depcache_bytes": round(sizes["depcache"]),
                    "ratio": round(sizes["depcache"] / sizes["raw"], 2),
                }
            )
    finally:
        writer.close()
        for admin in admins:
            admin.close()
    return rows


def run_protocols_together(run: Any, protocols: list[Any]) -> None:
    """Run depcache step protocols (generators of command batches) in lock step: step i of
    every protocol goes out in one batch of the backend's runner. Every protocol must return
    true (stored)."""
    pending: dict[int, list[Any]] = {}
    for n, steps in enumerate(protocols):
        try:
            pending[n] = next(steps)
        except StopIteration as stop:
            if not stop.value:
                raise Problem("a depcache store was refused during set-up") from None
    while pending:
        replies = run([command for batch in pending.values() for command in batch])
        following: dict[int, list[Any]] = {}
        at = 0
        for n, batch in pending.items():
            part, at = replies[at : at + len(batch)], at + len(batch)
            try:
                following[n] = protocols[n].send(part)
            except StopIteration as stop:
                if not stop.value:
                    raise Problem("a depcache store was refused during set-up") from None
        pending = following


def make_sdc(url: str, prefix: str, ttl: int | None) -> DecoratorLibrary:
    import simple_dep_cache  # type: ignore[import-untyped]  # noqa: PLC0415 - optional: --libs
    from simple_dep_cache.manager import (  # type: ignore[import-untyped]  # noqa: PLC0415
        get_or_create_cache_manager,
    )

    adapter_name = f"{prefix}-sdc"
    manager = get_or_create_cache_manager(
        name=adapter_name,
        config=simple_dep_cache.RedisConfig(url=url, prefix=adapter_name),
    )
    lib = SimpleDepCache(simple_dep_cache, manager)
    lib.name, lib.ttl, lib.manager_name = SDC, ttl, adapter_name
    return lib


def make_depcache(
    url: str, prefix: str, ttl: int | None, *, cluster: bool = False
) -> DecoratorLibrary:
    import depcache  # noqa: PLC0415 - optional: --libs can leave it out

    adapter_name = f"{prefix}-dc"
    options: dict[str, Any] = {"url": url, "prefix": adapter_name}
    if "l1_size" in inspect.signature(depcache.RedisConfig).parameters:
        options["l1_size"] = 0  # measure the Redis path, whatever DEP_CACHE_L1_SIZE says
    if cluster:
        options["cluster"] = True
    manager = depcache.get_or_create_cache_manager(
        name=adapter_name, config=depcache.RedisConfig(**options)
    )
    lib = (DepcacheCluster if cluster else DecoratorLibrary)(depcache, manager)
    lib.name, lib.ttl, lib.manager_name = DC, ttl, adapter_name
    return lib


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    operation: str  # "hit", "miss+store", "invalidate"
    param: str  # "", "k=5", "N=10000"
    library: str
    seconds_per_op: list[float] = field(default_factory=list)  # one per repeat
    ops_per_repeat: int = 0
    commands: CommandCount = field(default_factory=CommandCount)
    error: str | None = None
    ops_run: int = 0  # every op run, timed or not (warmup, counting)
    last_arg: int = 0  # the last argument a miss op was called with

    @property
    def label(self) -> str:
        return f"{self.operation} {self.param}".strip()

    @property
    def median(self) -> float | None:
        return h.median(self.seconds_per_op)

    @property
    def spread(self) -> float | None:
        """Half the min-max range of the repeats, relative to the median."""
        return h.spread(self.seconds_per_op)


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def row(self, operation: str, param: str, library: str) -> Row:
        row = Row(operation, param, library)
        self.rows.append(row)
        return row

    def problem(self, row: Row | None, message: str) -> None:
        where = f"[{row.label} / {row.library}] " if row else ""
        self.problems.append(where + message)
        if row is not None and row.error is None:
            row.error = message
        print(f"  PROBLEM {where}{message}", file=sys.stderr, flush=True)

    def baseline(self, row: Row, library: str = RAW) -> Row | None:
        for other in self.rows:
            if other.label == row.label and other.library == library:
                return other
        return None

    def ratio(self, row: Row, library: str = RAW) -> float | None:
        base = self.baseline(row, library)
        if base is None or base.median is None or row.median is None:
            return None
        return row.median / base.median


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        settings: Settings,
        *,
        url: str | None = None,
        run_prefix: str | None = None,
    ) -> None:
        self.url: str = url or args.redis_url
        self.settings = settings
        self.ttl: int | None = args.ttl or None
        self.admin = redis.Redis.from_url(self.url)
        self.run_prefix = run_prefix or f"dcbench-{uuid.uuid4().hex[:10]}"
        self.report = Report()
        self.indexes = Indexes()
        self.libs: dict[str, Any] = {}
        self.hit_spread = 1  # hits read this many keys in turn
        self.monitor = self.make_monitor()

    def make_monitor(self) -> Monitor:
        return Monitor(self.admin, f"{self.run_prefix}-probe")

    def commandstats(self) -> Counter[str]:
        """The server's INFO commandstats calls per command."""
        return server_commandstats(self.admin)

    # ---- counting -------------------------------------------------------------------------

    @contextmanager
    def counting(self, record: CommandCount, ops: int) -> Iterator[None]:
        """Count the commands of the code in the block, which runs ``ops`` operations."""
        monitor = self.monitor
        before = self.commandstats()
        t0 = time.perf_counter()
        session: AbstractContextManager[list[dict[str, Any]]] = (
            monitor.session() if monitor.available else nullcontext([])
        )
        with session as lines, ClientCounter() as client:
            yield
        seconds = time.perf_counter() - t0
        after = self.commandstats()
        if any(after[name] < n for name, n in before.items()):
            record.commandstats_reset = True  # someone ran CONFIG RESETSTAT meanwhile
        delta = after - before  # keeps positive counts only
        delta.pop("info", None)  # ours
        if monitor.available:
            delta.subtract(monitor.overhead)  # MONITOR's own connection, MONITOR and ECHO
            delta = +delta
        record.ops += ops
        record.seconds += seconds
        record.writes += client.writes
        record.rounds += client.rounds
        record.client.update(client.commands)
        record.commandstats.update(delta)
        if monitor.available and not client.unattributable:
            own, scripts, others = monitor.attribute(lines, client.ports)
            record.source = "monitor"
            record.server.update(own + scripts)
            record.scripts.update(scripts)
            record.others += others
        else:
            record.source = "commandstats"
            record.server.update(delta)
            extra = Counter(delta)
            extra.subtract(client.commands)
            record.scripts.update(+extra)

    # ---- setup / teardown -----------------------------------------------------------------

    def setup(self, wanted: list[str]) -> None:
        self.admin.ping()
        factories: dict[str, Callable[[str, str, int | None], Any]] = {
            RAW: lambda url, prefix, ttl: RawRedis(url, f"{prefix}-raw", ttl),
            SDC: make_sdc,
            DC: make_depcache,
        }
        for name in wanted:
            try:
                self.libs[name] = factories[name](self.url, self.run_prefix, self.ttl)
            except ImportError as exc:
                print(
                    f"cannot import {name}: {exc} (pip install -e '.[bench]'; "
                    "or pass --libs to leave it out)",
                    file=sys.stderr,
                )
                raise SystemExit(2) from exc

    def cleanup(self) -> int:
        removed = 0
        keys: list[bytes] = []
        for key in self.admin.scan_iter(match=f"{self.run_prefix}-*", count=1_000):
            keys.append(key)
            if len(keys) >= 1_000:
                removed += self.admin.unlink(*keys)
                keys = []
        if keys:
            removed += self.admin.unlink(*keys)
        for lib in self.libs.values():
            with suppress(Exception):  # closing is best effort
                lib.close()
        self.admin.close()
        return removed

    # ---- hit and miss+store ---------------------------------------------------------------

    def args_for(self, row: Row, n: int, fresh: bool) -> int:
        """The first argument of n ops for row (fresh arguments for misses)."""
        start = self.indexes.take(n) if fresh else 0
        row.ops_run += n
        row.last_arg = start + n - 1
        return start

    def calibrate(self, row: Row, op: Callable[[int], Any], fresh: bool) -> int:
        """Warm op up for warm_seconds; return ops per timed repeat."""
        s = self.settings
        batch, spent, per_op = 8, 0.0, 0.0
        while spent < s.warm_seconds:
            start = self.args_for(row, batch, fresh)
            elapsed = timed_loop(op, start, batch)
            spent += elapsed
            per_op = elapsed / batch
            batch = min(batch * 2, s.max_ops)
        return max(10, min(s.max_ops, int(s.repeat_seconds / max(per_op, 1e-9))))

    def measure_ops(
        self, operation: str, param: str, ops: dict[str, Callable[[int], Any]], fresh: bool
    ) -> None:
        """Time every contender on one operation; repeats interleave the contenders."""
        s = self.settings
        rows = {name: self.report.row(operation, param, name) for name in ops}
        live: dict[str, Callable[[int], Any]] = {}
        for name, op in ops.items():
            row = rows[name]
            try:
                row.ops_per_repeat = self.calibrate(row, op, fresh)
                start = self.args_for(row, s.count_ops, fresh)
                with self.counting(row.commands, s.count_ops):
                    for i in range(start, start + s.count_ops):
                        op(i)
                live[name] = op
            except Exception as exc:  # report it, go on with the others
                self.report.problem(row, f"raised {exc!r}")
                traceback.print_exc()
        names = list(live)
        for repeat in range(s.repeats):
            shift = repeat % len(names) if names else 0
            for name in names[shift:] + names[:shift]:
                row = rows[name]
                if row.error:
                    continue
                n = row.ops_per_repeat
                start = self.args_for(row, n, fresh)
                try:
                    row.seconds_per_op.append(timed_loop(live[name], start, n) / n)
                except Exception as exc:
                    self.report.problem(row, f"raised {exc!r}")
                    traceback.print_exc()
        for name, row in rows.items():
            if row.median:
                print(f"  {row.label:<20} {name:<22} {1 / row.median:>10,.0f} ops/s", flush=True)

    def bench_hit(self) -> None:
        ops: dict[str, Callable[[int], Any]] = {}
        for name, lib in self.libs.items():
            row_for_error = Row("hit", "", name)
            try:
                ops[name] = lib.hit_op(self.hit_spread)
            except Exception as exc:
                self.report.rows.append(row_for_error)
                self.report.problem(row_for_error, f"setup raised {exc!r}")
        before = {name: getattr(lib, "calls", 0) for name, lib in self.libs.items()}
        self.measure_ops("hit", "", ops, fresh=False)
        for name, lib in self.libs.items():
            if isinstance(lib, DecoratorLibrary) and lib.calls != before[name]:
                row = self.report.baseline(Row("hit", "", name), name)
                self.report.problem(
                    row, f"the function body ran {lib.calls - before[name]} times during hits"
                )

    def bench_miss(self, k: int) -> None:
        ops: dict[str, Callable[[int], Any]] = {}
        raw = self.libs.get(RAW)
        if raw is not None:
            ops[RAW] = raw.miss_op(k, aside=False)
            ops[RAW_ASIDE] = raw.miss_op(k, aside=True)
        for name, lib in self.libs.items():
            if isinstance(lib, DecoratorLibrary):
                ops[name] = lib.miss_op(k)
        counts = {name: lib.calls for name, lib in self.libs.items() if hasattr(lib, "calls")}
        self.measure_ops("miss+store", f"k={k}", ops, fresh=True)
        for name, lib in self.libs.items():
            if not isinstance(lib, DecoratorLibrary):
                continue
            row = self.report.baseline(Row("miss+store", f"k={k}", name), name)
            if row is None or row.error:
                continue
            ran = lib.calls - counts[name]
            if ran != row.ops_run:  # every call had a new argument: every one is a miss
                self.report.problem(
                    row, f"{row.ops_run} calls with new arguments ran the body {ran} times"
                )
            # the last stored entry must now be a hit
            before = lib.calls
            value = ops[name](row.last_arg)
            if value != make_value(row.last_arg) or lib.calls != before:
                self.report.problem(row, "a stored entry was not served as a hit")

    # ---- invalidation ---------------------------------------------------------------------

    def bench_invalidate(self, n: int) -> None:
        s = self.settings
        param = f"N={n}"
        n_deps = max(1, min(s.inval_max_deps, s.inval_budget // n))
        names = list(self.libs)
        rows = {name: self.report.row("invalidate", param, name) for name in names}
        ops = {name: lib.invalidate_op() for name, lib in self.libs.items()}
        # warmup: a few entries under each of 16 dependencies (loads the scripts on every node
        # of a cluster: one left unloaded costs the counted operation a round trip), opens
        # connections; then an untimed round of one dependency with n entries counts commands
        warm = {
            f"n{n}-warm{d}": [f"e{n}-warm{d}-{j}" for j in range(min(n, 10))] for d in range(16)
        }
        counted = {f"n{n}-count": [f"e{n}-count-{j}" for j in range(n)]}
        for name, lib in self.libs.items():
            try:
                lib.populate(warm)
                self.check_invalidate(rows[name], lib, ops[name], warm)
                lib.populate(counted)
                with self.counting(rows[name].commands, len(counted)):
                    _, removed = timed_calls(ops[name], list(counted))
                self.check_invalidate(rows[name], lib, ops[name], counted, removed)
            except Exception as exc:
                self.report.problem(rows[name], f"raised {exc!r}")
                traceback.print_exc()
        for rnd in range(1, s.inval_rounds + 1):
            deps = [f"n{n}-r{rnd}-d{b}" for b in range(n_deps)]
            entries = {
                dep: [f"e{n}-r{rnd}-d{b}-{j}" for j in range(n)] for b, dep in enumerate(deps)
            }
            live = [name for name in names if not rows[name].error]
            shift = rnd % len(live) if live else 0
            for name in live[shift:] + live[:shift]:
                row, lib = rows[name], self.libs[name]
                try:
                    lib.populate(entries)
                    elapsed, removed = timed_calls(ops[name], deps)
                    row.seconds_per_op.append(elapsed / len(deps))
                    row.ops_per_repeat = len(deps)
                    self.check_invalidate(row, lib, ops[name], entries, removed)
                except Exception as exc:
                    self.report.problem(row, f"raised {exc!r}")
                    traceback.print_exc()
        for name, row in rows.items():
            if row.median:
                print(
                    f"  {row.label:<20} {name:<22} {1 / row.median:>10,.1f} ops/s"
                    f"  ({n_deps} dep(s) x {n} entries per round)",
                    flush=True,
                )

    def check_invalidate(
        self,
        row: Row,
        lib: Any,
        op: Callable[[str], int],
        entries: dict[str, list[str]],
        removed: list[int] | None = None,
    ) -> None:
        """Invalidate (unless done: ``removed``) and check that every entry went."""
        if removed is None:
            removed = [op(dep) for dep in entries]
        expected = [len(keys) for keys in entries.values()]
        if removed != expected:
            self.report.problem(row, f"invalidate returned {removed[:5]}, expected {expected[:5]}")
        sample = [keys[i] for keys in entries.values() for i in (0, -1)]
        left = [key for key in sample if lib.exists(key)]
        if left:
            self.report.problem(row, f"entries still present after it: {left[:4]}")

    # ---- driver ---------------------------------------------------------------------------

    def phases(self) -> list[tuple[str, Callable[[], None]]]:
        phases: list[tuple[str, Callable[[], None]]] = [("hit", self.bench_hit)]
        phases += [(f"miss+store k={k}", partial(self.bench_miss, k)) for k in MISS_KS]
        phases += [
            (f"invalidate N={n}", partial(self.bench_invalidate, n)) for n in INVALIDATION_NS
        ]
        return phases

    def run(self, t0: float | None = None) -> None:
        t0 = time.perf_counter() if t0 is None else t0
        for title, phase in self.phases():
            print(f"{title}  (t={time.perf_counter() - t0:.1f} s)", flush=True)
            phase()


# --------------------------------------------------------------------------------------------
# The cluster column
# --------------------------------------------------------------------------------------------

CLUSTER_MASTERS = 3
CLUSTER_HIT_KEYS = 64
CLUSTER_OPERATIONS = ("hit", "miss+store k=5", "invalidate N=10000")
CLUSTER_DC = "depcache cluster"  # names used in the comparison and the chart
CLUSTER_RAW = "redis-py cluster"


class ClusterBench(Bench):
    """hit, miss+store k=5 and invalidate N=10,000 on a throw-away Redis Cluster: depcache
    (``cluster=True``) against raw redis-py's RedisCluster.

    Its rows use the library names of the standalone run; the cluster report is separate.
    Commands are counted with the INFO commandstats of every node: the cluster has no other
    client, so they are this run's alone (MONITOR is not used)."""

    def __init__(
        self,
        args: argparse.Namespace,
        settings: Settings,
        nodes: list[Any],
        run_prefix: str,
    ) -> None:
        self.nodes = nodes
        self.node_admins = [redis.Redis.from_url(node.url) for node in nodes]
        super().__init__(args, settings, url=nodes[0].url, run_prefix=run_prefix)
        # entries spread over the masters: a hit reads one of 64 keys in turn, so that the
        # times average over the nodes (and, for depcache, over whether the entry shares the
        # epoch key's node)
        self.hit_spread = CLUSTER_HIT_KEYS

    def make_monitor(self) -> Monitor:
        return Monitor.unavailable(
            self.admin, "not used: the throw-away cluster has no other client"
        )

    def commandstats(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for admin in self.node_admins:
            total.update(server_commandstats(admin))
        return total

    def setup(self, wanted: list[str]) -> None:
        self.admin.ping()
        self.libs[RAW] = RawCluster(self.url, f"{self.run_prefix}-raw", self.ttl)
        self.libs[DC] = make_depcache(self.url, self.run_prefix, self.ttl, cluster=True)

    def phases(self) -> list[tuple[str, Callable[[], None]]]:
        return [
            ("cluster: hit", self.bench_hit),
            ("cluster: miss+store k=5", partial(self.bench_miss, 5)),
            ("cluster: invalidate N=10000", partial(self.bench_invalidate, 10_000)),
        ]

    def cleanup(self) -> int:
        """Close the clients; the keys go with the cluster. Returns how many keys it holds."""
        held = 0
        for lib in self.libs.values():
            with suppress(Exception):  # closing is best effort
                lib.close()
        for admin in self.node_admins:
            with suppress(Exception):
                held += int(admin.dbsize())
            admin.close()
        self.admin.close()
        return held


@dataclass
class ClusterRun:
    requested: bool  # --cluster given explicitly
    bench: ClusterBench | None = None
    skipped: str | None = None  # why it did not run
    meta: dict[str, Any] = field(default_factory=dict)


def cluster_unavailable() -> str | None:
    """Why a throw-away cluster cannot be started here, or None."""
    missing = [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    try:
        import tests.support.servers  # noqa: F401, PLC0415 - needs mirakuru and port-for
    except ImportError as exc:
        return f"cannot import tests.support.servers ({exc}; pip install mirakuru port-for)"
    return None


def run_cluster(
    args: argparse.Namespace, settings: Settings, run_prefix: str, t0: float
) -> ClusterRun:
    """Start a 3-master cluster, run the cluster column on it, stop it."""
    result = ClusterRun(requested=args.cluster is True)
    reason = cluster_unavailable()
    if reason is not None:
        result.skipped = reason
        return result
    from tests.support.servers import redis_cluster  # noqa: PLC0415

    print(f"starting a throw-away {CLUSTER_MASTERS}-master Redis Cluster", flush=True)
    started = time.perf_counter()
    try:
        cluster = redis_cluster(CLUSTER_MASTERS)
        nodes = cluster.__enter__()
    except Exception as exc:
        result.skipped = f"the cluster did not start: {exc!r}"
        return result
    try:
        startup = time.perf_counter() - started
        bench = ClusterBench(args, settings, nodes, f"{run_prefix}-c")
        result.bench = bench
        try:
            bench.setup([RAW, DC])
            server = bench.admin.info("server")
            result.meta = {
                "masters": CLUSTER_MASTERS,
                "ports": [node.port for node in nodes],
                "redis_server": server.get("redis_version"),
                "startup_seconds": round(startup, 1),
                "run_prefix": bench.run_prefix,
            }
            bench.run(t0)
            print(f"cluster: memory  (t={time.perf_counter() - t0:.1f} s)", flush=True)
            result.meta["memory"] = measure_memory(
                nodes[0].url,
                bench.run_prefix,
                settings.memory_entries,
                cluster_nodes=[node.url for node in nodes],
            )
        except Exception as exc:
            bench.report.problem(None, f"cluster column raised {exc!r}")
            traceback.print_exc()
        finally:
            result.meta["keys_discarded_with_cluster"] = bench.cleanup()
    finally:
        cluster.__exit__(None, None, None)
    return result


def cluster_comparison(report: Report, cluster: Report) -> list[dict[str, Any]]:
    """Per cluster operation: times and the ratios of cluster to standalone."""

    def find(rep: Report, label: str, library: str) -> Row | None:
        for row in rep.rows:
            if row.label == label and row.library == library and not row.error:
                return row
        return None

    def div(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    def rt(row: Row | None) -> float | None:
        c = row.commands if row else None
        return c.rounds / c.ops if c and c.ops else None

    out = []
    for label in CLUSTER_OPERATIONS:
        raw_s, dc_s = find(report, label, RAW), find(report, label, DC)
        raw_c, dc_c = find(cluster, label, RAW), find(cluster, label, DC)
        t = {
            name: (row.median if row else None)
            for name, row in (("raw_s", raw_s), ("dc_s", dc_s), ("raw_c", raw_c), ("dc_c", dc_c))
        }
        out.append(
            {
                "operation": label,
                "redis_py_seconds": t["raw_s"],
                "redis_py_cluster_seconds": t["raw_c"],
                "depcache_seconds": t["dc_s"],
                "depcache_cluster_seconds": t["dc_c"],
                "depcache_cluster_over_standalone": div(t["dc_c"], t["dc_s"]),
                "redis_py_cluster_over_standalone": div(t["raw_c"], t["raw_s"]),
                "depcache_cluster_over_redis_py_cluster": div(t["dc_c"], t["raw_c"]),
                "depcache_over_redis_py": div(t["dc_s"], t["raw_s"]),
                "depcache_round_trips": rt(dc_s),
                "depcache_cluster_round_trips": rt(dc_c),
                "redis_py_cluster_round_trips": rt(raw_c),
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _fmt(counter: dict[str, float]) -> str:
    return ", ".join(f"{name} {n:g}" for name, n in sorted(counter.items(), key=lambda x: -x[1]))


def core_table(
    report: Report, *, targets: bool, writes: bool = False, graded: bool = True
) -> tuple[Table, list[str]]:
    """The results table of a report, and its commands-per-operation lines."""
    headers = ["operation", "library", "ops/s", "us/op", "+-%", "x raw"]
    headers += ["target"] if targets else []
    headers += ["x aside", "RT/op"] + (["writes/op"] if writes else [])
    headers += ["sent/op", "cmds/op", "stats/op"]
    table = Table(
        headers,
        right={i for i, h in enumerate(headers) if h not in ("operation", "library", "target")},
    )
    breakdown: list[tuple[str, str, str, str]] = []
    for row in report.rows:
        med = row.median
        ratio = report.ratio(row)
        aside = report.ratio(row, RAW_ASIDE) if row.operation == "miss+store" else None
        target = TARGETS.get(row.label)
        target_cell = ""
        if target is not None and row.library not in (RAW, RAW_ASIDE):
            verdict = (
                "" if ratio is None or not graded else (" ok" if ratio <= target else " MISSED")
            )
            target_cell = f"<={target:g}{verdict}"
        c = row.commands
        stats_cell = "-" if not c.ops else f"{c.total_per_op(c.commandstats):g}"
        if c.commandstats_reset:
            stats_cell = "reset"
        cells = [
            row.label,
            row.library + (" (ERROR)" if row.error else ""),
            f"{1 / med:,.0f}" if med else "-",
            h.num(med, ",.1f", 1e6),
            h.num(row.spread, ".0f", 100),
            h.num(ratio, ".2f"),
        ]
        cells += [target_cell] if targets else []
        cells += [
            f"{aside:.2f}" if aside is not None else "",
            f"{c.rounds / c.ops:g}" if c.ops else "-",
        ]
        cells += [f"{c.writes / c.ops:g}" if c.ops else "-"] if writes else []
        cells += [
            f"{c.total_per_op(c.client):g}" if c.ops else "-",
            f"{c.total_per_op(c.server):g}" if c.ops else "-",
            stats_cell,
        ]
        table.add(cells, group=row.label)
        if c.ops:
            breakdown.append(
                (row.label, row.library, _fmt(c.per_op(c.client)), _fmt(c.per_op(c.scripts)))
            )
    w0 = max((len(b[0]) for b in breakdown), default=10)
    w1 = max((len(b[1]) for b in breakdown), default=10)
    lines = []
    for label, library, sent, extra in breakdown:
        text = f"{label:<{w0}}  {library:<{w1}}  sent: {sent or '-'}"
        if extra:
            text += f"  | in scripts: {extra}"
        lines.append(text)
    return table, lines


# Issue 16's ratios: (what, operation label, baseline library, standalone target, cluster
# target). The standalone invalidation target is issue 2's.
ISSUE16: list[tuple[str, str, str, float, float]] = [
    ("hit / redis-py GET + decode", "hit", RAW, 1.15, 1.15),
    ("miss+store k=5 / cache-aside", "miss+store k=5", RAW_ASIDE, 1.15, 1.5),
    ("invalidate N=10000 / hand-written", "invalidate N=10000", RAW, 1.2, 1.1),
]
MEMORY_TARGET = 1.5


def _graded(ratio: float | None, target: float, graded: bool = True) -> str:
    """The ratio with its target and, unless ``graded`` is false (a quick run), the verdict."""
    if ratio is None:
        return "-"
    if not graded:
        return f"{ratio:.2f} (<={target:g})"
    return f"{ratio:.2f} (<={target:g} {'ok' if ratio <= target else 'MISSED'})"


def _per_op(report: Report | None, label: str, library: str) -> tuple[str, str]:
    """(round trips, server commands) per op of a row, or dashes."""
    if report is None:
        return "-", "-"
    operation, _, param = label.partition(" ")
    row = report.baseline(Row(operation, param, library), library)
    c = row.commands if row is not None else None
    if c is None or not c.ops:
        return "-", "-"
    return f"{c.rounds / c.ops:g}", f"{c.total_per_op(c.server):g}"


def issue16_ratios(
    report: Report,
    cluster: Report | None,
    memory: list[dict[str, Any]],
    cluster_memory: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Every ratio of issue 16 on standalone and on the cluster, with round trips and server
    commands per op (depcache's and the hand-written baseline's)."""
    out: list[dict[str, Any]] = []
    for what, label, base, target_s, target_c in ISSUE16:
        ratios: dict[str, Any] = {"ratio": what, "standalone_target": target_s}
        ratios["cluster_target"] = target_c
        for side, rep in (("standalone", report), ("cluster", cluster)):
            operation, _, param = label.partition(" ")
            row = rep.baseline(Row(operation, param, DC), DC) if rep is not None else None
            ratio = rep.ratio(row, base) if rep is not None and row and not row.error else None
            ratios[side] = ratio
            ratios[f"{side}_round_trips"] = _per_op(rep, label, DC)[0]
            ratios[f"{side}_commands"] = _per_op(rep, label, DC)[1]
            ratios[f"{side}_baseline_round_trips"] = _per_op(rep, label, base)[0]
            ratios[f"{side}_baseline_commands"] = _per_op(rep, label, base)[1]
        out.append(ratios)
    for k in MEMORY_KS:
        found = {
            side: next((m for m in rows if m["k"] == k), None)
            for side, rows in (("standalone", memory), ("cluster", cluster_memory))
        }
        ratios = {
            "ratio": f"memory per entry k={k} / SET + SADD",
            "standalone_target": MEMORY_TARGET,
            "cluster_target": MEMORY_TARGET,
        }
        for side, m in found.items():
            ratios[side] = m["ratio"] if m else None
            bytes_cell = f"{m['depcache_bytes']:,} B / {m['raw_bytes']:,} B" if m else "-"
            ratios[f"{side}_round_trips"] = ratios[f"{side}_baseline_round_trips"] = "-"
            ratios[f"{side}_commands"], ratios[f"{side}_baseline_commands"] = bytes_cell, ""
        out.append(ratios)
    return out


def issue16_table(ratios: list[dict[str, Any]], graded: bool = True) -> Table:
    headers = [
        "depcache / hand-written",
        "standalone",
        "RT/op",
        "cmds/op (or bytes)",
        "cluster",
        "RT/op",
        "cmds/op (or bytes)",
    ]
    table = Table(headers, right={2, 3, 5, 6})

    def pair(r: dict[str, Any], side: str, what: str) -> str:
        """depcache's figure / the baseline's (the baseline's alone is left out if unknown)."""
        mine, theirs = r[f"{side}_{what}"], r[f"{side}_baseline_{what}"]
        return mine if theirs in ("", "-") else f"{mine} / {theirs}"

    for r in ratios:
        table.add(
            [
                r["ratio"],
                _graded(r["standalone"], r["standalone_target"], graded),
                pair(r, "standalone", "round_trips"),
                pair(r, "standalone", "commands"),
                _graded(r["cluster"], r["cluster_target"], graded),
                pair(r, "cluster", "round_trips"),
                pair(r, "cluster", "commands"),
            ]
        )
    return table


def comparison_table(comparison: list[dict[str, Any]]) -> Table:
    headers = [
        "operation",
        "redis-py us/op",
        "redis-py cluster us/op",
        "depcache us/op",
        "depcache cluster us/op",
        "depcache cluster / standalone",
        "redis-py cluster / standalone",
        "depcache cluster x raw cluster",
        "depcache x raw (standalone)",
        "depcache RT/op: standalone, cluster",
    ]
    table = Table(headers, right=set(range(1, len(headers))))
    for c in comparison:
        table.add(
            [
                c["operation"],
                h.num(c["redis_py_seconds"], ",.1f", 1e6),
                h.num(c["redis_py_cluster_seconds"], ",.1f", 1e6),
                h.num(c["depcache_seconds"], ",.1f", 1e6),
                h.num(c["depcache_cluster_seconds"], ",.1f", 1e6),
                h.num(c["depcache_cluster_over_standalone"], ".2f"),
                h.num(c["redis_py_cluster_over_standalone"], ".2f"),
                h.num(c["depcache_cluster_over_redis_py_cluster"], ".2f"),
                h.num(c["depcache_over_redis_py"], ".2f"),
                f"{h.num(c['depcache_round_trips'], 'g')}, "
                f"{h.num(c['depcache_cluster_round_trips'], 'g')}",
            ]
        )
    return table


def memory_table(memory: list[dict[str, Any]]) -> Table:
    table = Table(["dependencies", "redis-py SET + SADD", "depcache", "x raw"], {1, 2, 3})
    for m in memory:
        table.add(
            [
                f"k={m['k']}",
                f"{m['raw_bytes']:,} B",
                f"{m['depcache_bytes']:,} B",
                f"{m['ratio']:.2f}",
            ]
        )
    return table


def build_document(report: Report, meta: dict[str, Any], cluster: ClusterRun | None) -> Document:
    doc = Document()
    doc.heading("Standalone Redis")
    counting = meta.get("counting", {})
    if counting.get("source") == "monitor":
        busy = counting["other_clients_per_second"]
        count_line = (
            f"commands counted with MONITOR; other clients ran ~{busy:,.0f} commands/s on this "
            "Redis meanwhile" + (" (not idle: expect noisy timings)" if busy else "")
        )
    else:
        count_line = (
            f"commands counted with INFO commandstats only (MONITOR: {counting.get('error')}); "
            "cmds/op includes other clients' commands if the server was not idle"
        )
    doc.para(
        f"depcache benchmark: redis {meta.get('redis_server')} at {meta.get('redis_url')}, "
        f"redis-py {meta.get('redis_py')} (hiredis {meta.get('hiredis') or 'not installed'}), "
        f"python {meta.get('python')}, {meta.get('cpus')} CPUs (load average at the start: "
        f"{', '.join(f'{x:g}' for x in meta.get('load_average') or []) or 'unknown'}), "
        f"decode: {meta.get('json')}.",
        f"mode: {'quick' if meta.get('quick') else 'full'}, ttl: {meta.get('ttl')}, "
        f"repeats: {meta.get('repeats')} (hit/miss), {meta.get('invalidation_rounds')} "
        "(invalidate).",
        count_line + ".",
    )
    graded = not meta.get("quick")  # a quick run's repeats are too few to grade a target
    table, breakdown = core_table(report, targets=True, graded=graded)
    doc.table(table)
    doc.para(
        "x raw = time per op / redis-py's time per op (median of the repeats); "
        "x aside = the same against redis-py:cache-aside (GET + pipelined SET/SADD).",
        "The issue's miss baseline (redis-py) writes without reading first; a cache must look "
        "the key up before it computes, so redis-py:cache-aside is the same work as a "
        "cache's miss (2 round trips) and x aside the like-for-like ratio.",
        "RT/op = round trips per op (waits for replies, counted in redis-py); "
        "sent/op = commands this process sent; "
        "cmds/op = commands the server ran for the op, incl. inside Lua scripts (MONITOR); "
        "stats/op = INFO commandstats delta per op (every client).",
        "Issue 2 quoted simple-dep-cache at "
        + ", ".join(f"{k} {v}x" for k, v in ISSUE_SDC_REFERENCE.items())
        + ".",
    )
    doc.heading("Commands per operation (standalone)")
    doc.pre(breakdown)
    if meta.get("memory"):
        doc.heading("Memory per cached entry (standalone)")
        doc.table(memory_table(meta["memory"]))
        doc.para(
            "MEMORY USAGE of every key, summed, per entry: depcache's entry (with its epoch and "
            "dependency header), its members in the dependency indexes and the indexes' markers, "
            "against the raw value and one set per dependency; k distinct dependencies per entry; "
            "the function is named like a module-level one (bench_core.user_profile): an index "
            "whose entries' names (module.qualname:22 characters) pass 64 bytes leaves Redis's "
            "compact encoding and costs about 1 kB more."
        )

    if cluster is not None and cluster.bench is not None:
        cmeta = cluster.meta
        doc.heading(f"Redis Cluster ({CLUSTER_MASTERS} masters, throw-away, same machine)")
        doc.para(
            f"redis {cmeta.get('redis_server')} on ports "
            f"{', '.join(str(p) for p in cmeta.get('ports', []))} (started in "
            f"{cmeta.get('startup_seconds')} s); depcache with cluster=True against redis-py's "
            "RedisCluster doing the same work (ClusterPipeline where keys span slots).",
            "x raw = time per op / redis-py cluster's; RT/op = round trips per op (waits for "
            "replies); writes/op = socket writes per op: a cluster pipeline writes once to every "
            "node it reaches, then reads their replies, so it is one round trip whatever the "
            "count; cmds/op and stats/op = the "
            "INFO commandstats delta summed over the nodes (no other client).",
        )
        ctable, cbreakdown = core_table(cluster.bench.report, targets=False, writes=True)
        doc.table(ctable)
        doc.heading("Commands per operation (cluster)")
        doc.pre(cbreakdown)
        if cmeta.get("memory"):
            doc.heading("Memory per cached entry (cluster)")
            doc.table(memory_table(cmeta["memory"]))
            doc.para(
                "As on standalone, summed over the masters' keys (the prefix's epoch keys, "
                "shared by every entry, are left out in both)."
            )
        doc.heading("Cluster vs standalone")
        doc.table(comparison_table(cluster_comparison(report, cluster.bench.report)))
        doc.para(
            "us/op are medians of the runs above; a / b = the ratio of their times per op "
            "(above 1: the first is slower)."
        )
    elif cluster is not None:
        doc.para(f"Cluster column skipped: {cluster.skipped}.")

    doc.heading("Issue 16: every ratio, standalone and cluster")
    doc.table(issue16_table(all_issue16_ratios(report, meta, cluster), graded))
    doc.para(
        "depcache's time per op / the hand-written baseline's in the same run (median of the "
        "repeats; cache-aside = GET, then SET + 5 SADD pipelined), and memory per cached entry "
        "(MEMORY USAGE summed over every key) against raw SET + one SADD per dependency.",
        "RT/op and cmds/op: depcache's / the baseline's round trips and server commands per "
        "op (standalone: MONITOR, inside scripts included; cluster: INFO commandstats of every "
        "node); for memory rows, depcache's / raw bytes per entry.",
        "Targets (issue 16; the standalone invalidation target is issue 2's): hit <= 1.15, "
        "miss+store k=5 <= 1.15 standalone and <= 1.5 cluster, invalidation <= 1.2 standalone "
        "and <= 1.1 cluster, memory <= 1.5"
        + ("." if graded else "; a quick run is not graded (too few, too short repeats)."),
        "The cluster hit takes 2 round trips by design: the entry, then its dependencies' "
        "markers on their nodes (and the floor, unless the deployment's watch has read it), "
        "which is what keeps a hit correct when a node "
        "evicts keys or a master restarts empty (issue 13). A 1-round-trip GET cannot make "
        "that check, so the <= 1.15 target against a raw GET is not reachable by a hit that "
        "must stay correct; its ratio is reported as measured.",
    )
    problems = report.problems + (
        cluster.bench.report.problems if cluster is not None and cluster.bench else []
    )
    if problems:
        doc.heading("PROBLEMS (these measurements are not valid)")
        doc.pre([f"- {problem}" for problem in problems])
    return doc


def rows_json(report: Report) -> list[dict[str, Any]]:
    rows = []
    for row in report.rows:
        c = row.commands
        med = row.median
        rows.append(
            {
                "operation": row.operation,
                "param": row.param,
                "label": row.label,
                "library": row.library,
                "ops_per_sec": 1 / med if med else None,
                "seconds_per_op_median": med,
                "seconds_per_op_min": min(row.seconds_per_op) if row.seconds_per_op else None,
                "seconds_per_op_repeats": row.seconds_per_op,
                "ops_per_repeat": row.ops_per_repeat,
                "ratio_to_raw": report.ratio(row),
                "ratio_to_raw_cache_aside": (
                    report.ratio(row, RAW_ASIDE) if row.operation == "miss+store" else None
                ),
                "target_ratio": TARGETS.get(row.label),
                "round_trips_per_op": c.rounds / c.ops if c.ops else None,
                "socket_writes_per_op": c.writes / c.ops if c.ops else None,
                "commands_sent_per_op": sum(c.client.values()) / c.ops if c.ops else None,
                "commands_sent_breakdown": c.per_op(c.client),
                "server_commands_per_op": c.total_per_op(c.server),
                "server_commands_breakdown": c.per_op(c.server),
                "script_commands_breakdown": c.per_op(c.scripts),
                "commandstats_per_op": (
                    None if c.commandstats_reset else c.total_per_op(c.commandstats)
                ),
                "commandstats_reset": c.commandstats_reset,
                "commandstats_breakdown": c.per_op(c.commandstats),
                "counting_source": c.source,
                "counted_ops": c.ops,
                "error": row.error,
            }
        )
    return rows


def all_issue16_ratios(
    report: Report, meta: dict[str, Any], cluster: ClusterRun | None
) -> list[dict[str, Any]]:
    has_cluster = cluster is not None and cluster.bench is not None
    return issue16_ratios(
        report,
        cluster.bench.report if cluster is not None and cluster.bench is not None else None,
        meta.get("memory") or [],
        (cluster.meta.get("memory") or []) if cluster is not None and has_cluster else [],
    )


def to_json(report: Report, meta: dict[str, Any], cluster: ClusterRun | None) -> dict[str, Any]:
    data: dict[str, Any] = {"meta": meta, "rows": rows_json(report), "problems": report.problems}
    data["issue16"] = all_issue16_ratios(report, meta, cluster)
    if cluster is None:
        data["cluster"] = None
    elif cluster.bench is None:
        data["cluster"] = {"skipped": cluster.skipped}
    else:
        data["cluster"] = {
            "skipped": None,
            "meta": cluster.meta,
            "rows": rows_json(cluster.bench.report),
            "problems": cluster.bench.report.problems,
            "comparison": cluster_comparison(report, cluster.bench.report),
        }
    return data


def _ratios(report: Report, labels: list[str], library: str) -> list[float]:
    """Time per op / raw's for each label (NaN where there is none)."""
    values = []
    for label in labels:
        operation, _, param = label.partition(" ")
        row = report.baseline(Row(operation, param, library), library)
        ratio = report.ratio(row) if row is not None and not row.error else None
        values.append(ratio if ratio is not None else math.nan)
    return values


def _bars(ax: Any, series: list[tuple[str, list[float], str]], labels: list[str]) -> None:
    """Grouped horizontal bars, one group per label, each bar annotated with its value."""
    width = 0.8 / max(1, len(series))
    for n, (name, values, color) in enumerate(series):
        ys = [i + (n - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.barh(ys, values, height=width, label=name, color=color)
        for y, v in zip(ys, values, strict=True):
            if not math.isnan(v):
                ax.text(v * 1.03, y, f"{v:.2f}", va="center", fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right")
    finite = [v for _, values, _ in series for v in values if not math.isnan(v)]
    ax.set_xscale("log")
    low, high = min([*finite, 1.0]) * 0.8, max([*finite, 1.0]) * 1.5
    ax.set_xlim(low, high)
    ticks = [t for t in (0.25, 0.5, 1, 2, 5, 10, 20, 50, 100) if low <= t <= high]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xticks([], minor=True)


def write_chart(path: Path, report: Report, cluster: ClusterRun | None) -> str:
    """A PNG of the ratios (x raw per operation; cluster / standalone). Returns a message."""
    try:
        import matplotlib  # noqa: PLC0415 - optional: only --chart needs it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return f"--chart {path}: matplotlib is not installed (pip install matplotlib); skipped"

    labels = list(dict.fromkeys(row.label for row in report.rows))
    cluster_report = cluster.bench.report if cluster is not None and cluster.bench else None
    series = [
        (name, _ratios(report, labels, name), color)
        for name, color in ((SDC, "#9e9e9e"), (DC, "#1f77b4"))
        if any(row.library == name for row in report.rows)
    ]
    if cluster_report is not None:
        values = _ratios(cluster_report, labels, DC)
        series.append((f"{CLUSTER_DC} (x {CLUSTER_RAW})", values, "#ff7f0e"))
    panels = 2 if cluster_report is not None else 1
    fig, axes = plt.subplots(
        1, panels, figsize=(7.5 * panels, 5.5), squeeze=False, constrained_layout=True
    )
    ax = axes[0][0]
    _bars(ax, series, labels)
    for i, label in enumerate(labels):
        target = TARGETS.get(label)
        if target is not None:
            ax.plot([target, target], [i - 0.45, i + 0.45], color="red", linewidth=1.5)
    ax.set_xlabel("time per op / raw redis-py's (log scale; red: issue 2 target)")
    ax.set_title("Ratio to hand-written redis-py (lower is faster)")
    if cluster_report is not None:
        comparison = cluster_comparison(report, cluster_report)
        pairs = [
            ("depcache: cluster / standalone", "depcache_cluster_over_standalone", "#1f77b4"),
            ("redis-py: cluster / standalone", "redis_py_cluster_over_standalone", "#9e9e9e"),
            (f"{CLUSTER_DC} / {CLUSTER_RAW}", "depcache_cluster_over_redis_py_cluster", "#ff7f0e"),
        ]
        cluster_series = [
            (name, [c[key] if c[key] is not None else math.nan for c in comparison], color)
            for name, key, color in pairs
        ]
        bx = axes[0][1]
        _bars(bx, cluster_series, [c["operation"] for c in comparison])
        bx.set_xlabel("ratio of times per op (log scale; above 1: the first is slower)")
        bx.set_title(f"What a {CLUSTER_MASTERS}-master cluster costs")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart written to {path}"


def metadata(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    server = bench.admin.info("server")
    meta = h.environment(quick=args.quick, redis_url=bench.url)
    meta.update(
        {
            "redis_server": server.get("redis_version"),
            "redis_py": redis.__version__,
            "hiredis": h.version("hiredis"),
            "simple_dep_cache": h.version("simple-dep-cache"),
            "ttl": bench.ttl,
            "repeats": bench.settings.repeats,
            "invalidation_rounds": bench.settings.inval_rounds,
            "settings": bench.settings.__dict__,
            "targets": TARGETS,
            "run_prefix": bench.run_prefix,
        }
    )
    return meta


def counting_summary(bench: Bench) -> dict[str, Any]:
    counts = [row.commands for row in bench.report.rows if row.commands.ops]
    seconds = sum(c.seconds for c in counts)
    return {
        "source": "monitor" if bench.monitor.available else "commandstats",
        "error": bench.monitor.error,
        "other_clients_per_second": sum(c.others for c in counts) / seconds if seconds else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    h.redis_url_option(parser)
    parser.add_argument(
        "--ttl",
        type=int,
        default=3600,
        help="ttl in seconds for every entry, 0 for none (default 3600)",
    )
    parser.add_argument(
        "--libs",
        default=",".join(LIBRARIES),
        help=f"comma-separated subset of {','.join(LIBRARIES)}",
    )
    parser.add_argument(
        "--cluster",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure depcache on a throw-away 3-master Redis Cluster (default: when "
        "redis-server and redis-cli are installed; --cluster fails the run without them)",
    )
    parser.add_argument("--chart", metavar="PATH", help="also draw the ratios as a PNG")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.libs.split(",") if name.strip()]
    unknown = set(wanted) - set(LIBRARIES)
    if unknown:
        parser.error(f"unknown --libs {sorted(unknown)}")
    if RAW not in wanted:
        parser.error("--libs must include redis-py (the baseline)")
    if args.cluster and DC not in wanted:
        parser.error("--cluster measures depcache: --libs must include it")

    settings = Settings.for_mode(args.quick)
    t0 = time.perf_counter()
    bench = Bench(args, settings)
    meta: dict[str, Any] = {}
    try:
        bench.setup(wanted)
        meta = metadata(bench, args)
        print(
            f"depcache benchmark ({'quick' if args.quick else 'full'}), decode: {JSON_LIB}, "
            f"key prefix {bench.run_prefix}-*",
            flush=True,
        )
        bench.run(t0)
        if DC in wanted:
            print(f"memory  (t={time.perf_counter() - t0:.1f} s)", flush=True)
            meta["memory"] = measure_memory(bench.url, bench.run_prefix, settings.memory_entries)
    finally:
        removed = bench.cleanup()
    meta["cleaned_keys"] = removed
    meta["counting"] = counting_summary(bench)

    cluster: ClusterRun | None = None
    if args.cluster is not False and DC in wanted:
        cluster = run_cluster(args, settings, bench.run_prefix, t0)
        if cluster.skipped:
            print(f"cluster column skipped: {cluster.skipped}", file=sys.stderr, flush=True)
    meta["elapsed_seconds"] = round(time.perf_counter() - t0, 1)

    doc = build_document(bench.report, meta, cluster)
    h.publish(
        doc,
        args,
        to_json(bench.report, meta, cluster),
        script="bench_core.py",
        default_markdown=h.RESULTS / "core.md",
    )
    print(f"{meta['elapsed_seconds']} s; removed {removed} keys under {bench.run_prefix}-*")
    if args.chart:
        print(write_chart(Path(args.chart), bench.report, cluster))

    if cluster is not None and cluster.requested and cluster.bench is None:
        return 2
    problems = bench.report.problems or (
        cluster is not None and cluster.bench is not None and cluster.bench.report.problems
    )
    return 3 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
