"""Where a standalone miss's time goes: the client's CPU and the server's time, per operation.

``bench_core`` times a miss with 5 dependencies against hand-written cache-aside (``GET``, then
``SET`` + 5 ``SADD`` pipelined) by the wall clock. This script splits the same two workloads:

* **client CPU** per operation: ``time.thread_time()`` of this process around the loop (the
  Python each side runs, redis-py's included);
* **server time** per operation: the growth of ``INFO commandstats``' ``usec`` of the commands
  each side sends itself (``EVALSHA`` for depcache, whose time includes the commands its scripts
  run; ``GET``, ``SET`` and ``SADD`` for cache-aside), and separately the time of the commands
  depcache's scripts run inside them. Other clients of the server count too: run it on a Redis
  nobody else uses.

Run from the checkout (``--quick``: 300 operations per side, one round)::

    python -m bench.bench_server [--quick] [--json PATH] [--markdown [PATH]] [--redis-url URL]
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

import depcache

try:
    from bench import _harness as h
except ModuleNotFoundError as exc:  # run as a file: bench is not importable then
    if exc.name != "bench":
        raise
    raise SystemExit("run it from the checkout as a module: python -m bench.bench_server") from None

K = 5  # dependencies per miss, as bench_core's miss+store k=5
TTL = 3600
ROUNDS = 5  # interleaved rounds (median reported)
N = 3_000  # operations per side and round
QUICK_N, QUICK_ROUNDS = 300, 1
SCRIPT_CALLS = ("evalsha", "eval", "evalsha_ro", "eval_ro")
ASIDE_CALLS = ("get", "set", "sadd")


def usec(admin: redis.Redis) -> dict[str, tuple[int, int]]:
    """Per command: (calls, microseconds) so far."""
    info: dict[str, Any] = admin.info("commandstats")
    return {
        key.removeprefix("cmdstat_"): (int(value["calls"]), int(value["usec"]))
        for key, value in info.items()
    }


def delta(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, int]:
    return {name: after[name][1] - before.get(name, (0, 0))[1] for name in after}


def make_value(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"item {i}", "tags": ["a", "b"], "score": 1.5}


def measure(
    admin: redis.Redis, op: Callable[[int], Any], start: int, n: int
) -> tuple[float, dict[str, int]]:
    """Client CPU seconds of ``n`` operations and the server's usec per command meanwhile."""
    before = usec(admin)
    cpu = time.thread_time()
    for i in range(start, start + n):
        op(i)
    cpu = time.thread_time() - cpu
    return cpu, delta(before, usec(admin))


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    h.redis_url_option(parser)
    args = parser.parse_args(argv)
    n, rounds = (QUICK_N, QUICK_ROUNDS) if args.quick else (N, ROUNDS)
    prefix = f"dcbench-server-{uuid.uuid4().hex[:10]}"
    admin = redis.Redis.from_url(args.redis_url)
    client = redis.Redis.from_url(args.redis_url)
    manager = depcache.get_or_create_cache_manager(
        prefix, config=depcache.RedisConfig(url=args.redis_url, prefix=prefix)
    )
    deps = [f"k{K}:{j}" for j in range(K)]

    @depcache.cache_with_deps(name=prefix, ttl=TTL)
    def cached(i: int) -> dict[str, Any]:
        for dep in deps:
            depcache.add_dependency(dep)
        return make_value(i)

    def aside(i: int) -> Any:
        key = f"{prefix}:aside:{i}"
        blob = client.get(key)
        if blob is not None:
            return h.jloads(blob)
        value = make_value(i)
        pipe = client.pipeline(transaction=False)
        pipe.set(key, h.jdumps(value), ex=TTL)
        for dep in deps:
            pipe.sadd(f"{prefix}:aside-deps:{dep}", key)
        pipe.execute()
        return value

    ops = {"depcache": cached, "redis-py:cache-aside": aside}
    counter = itertools.count()
    results: dict[str, dict[str, list[float]]] = {
        name: {"cpu": [], "server": [], "inside": []} for name in ops
    }
    meta = h.environment(quick=args.quick, redis_url=args.redis_url)
    try:
        for op in ops.values():  # warm up: scripts loaded, indexes populated
            start = next(counter) * 1_000_000
            measure(admin, op, start, 200)
        for rnd in range(rounds):
            order = list(ops) if rnd % 2 == 0 else list(reversed(ops))
            for name in order:
                start = next(counter) * 1_000_000
                cpu, server = measure(admin, ops[name], start, n)
                own = SCRIPT_CALLS if name == "depcache" else ASIDE_CALLS
                top = sum(server.get(cmd, 0) for cmd in own)
                inside = sum(v for cmd, v in server.items() if cmd not in own)
                results[name]["cpu"].append(cpu / n * 1e6)
                results[name]["server"].append(top / n)
                results[name]["inside"].append(inside / n if name == "depcache" else 0.0)
                print(
                    f"{name}: round {rnd + 1}/{rounds}: client CPU {cpu / n * 1e6:.1f} us/op, "
                    f"server {top / n:.1f} us/op",
                    flush=True,
                )
    finally:
        manager.clear()
        for key in admin.scan_iter(f"{prefix}:*", count=1000):
            admin.delete(key)
        manager.close()
        client.close()

    base = {m: h.median(results["redis-py:cache-aside"][m]) for m in ("cpu", "server")}
    with redis.Redis.from_url(args.redis_url) as probe:
        server_version = probe.info("server").get("redis_version")
    load = meta["load_average"]
    doc = h.Document()
    doc.heading("A standalone miss: client CPU and server time per operation")
    doc.para(
        f"redis {server_version} at {meta['redis_url']}, redis-py {redis.__version__}, python "
        f"{meta['python']}, {meta['cpus']} CPUs (load average at the start: "
        f"{', '.join(f'{x:g}' for x in load) if load else 'unknown'}), decode: {meta['json']}.",
        f"A miss with {K} dependencies (depcache's lookup and store scripts) against "
        f"hand-written cache-aside, {n:,} operations per side and round, {rounds} round(s) "
        "interleaved; medians of the rounds. Client CPU = time.thread_time() per operation; "
        "server = INFO commandstats usec of the commands the side sends itself (for depcache "
        "its EVALSHAs, which include what their scripts run), per operation; inside scripts = "
        "the part of it spent in the commands the scripts ran.",
    )
    table = h.Table(
        ["side", "client CPU us/op", "x aside", "server us/op", "x aside", "inside scripts us/op"],
        right={1, 2, 3, 4, 5},
    )
    for name in ops:
        cpu_us = h.median(results[name]["cpu"])
        server_us = h.median(results[name]["server"])
        table.add(
            [
                name,
                h.num(cpu_us, ".1f"),
                h.num(cpu_us / base["cpu"] if cpu_us and base["cpu"] else None, ".2f"),
                h.num(server_us, ".1f"),
                h.num(server_us / base["server"] if server_us and base["server"] else None, ".2f"),
                h.num(h.median(results[name]["inside"]), ".1f") if name == "depcache" else "-",
            ]
        )
    doc.table(table)
    data = {"meta": meta, "k": K, "n": n, "rounds": rounds, "results": results}
    h.publish(doc, args, data, script="bench_server.py", default_markdown=h.RESULTS / "server.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
