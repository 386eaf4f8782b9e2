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

* **server instructions** per operation (``--instructions``, needs valgrind): a throw-away
  redis-server runs under ``valgrind --tool=callgrind``, and each side's misses and hits are
  counted in instructions the server executed, networking and command parsing included.
  Unlike time, the count does not depend on what else the machine is doing, so it shows what a
  change to a script costs or saves (about ten seconds more).

Run from the checkout (``--quick``: 300 operations per side, one round)::

    python -m bench.bench_server [--quick] [--instructions] [--json PATH] [--markdown [PATH]]
        [--redis-url URL]
"""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
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
COUNTED_N, QUICK_COUNTED_N = 1_000, 100  # operations per side counted under callgrind
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


class Sides:
    """The two workloads against one server: depcache's decorated function and hand-written
    cache-aside, each a miss for a new ``i`` and a hit for one seen before."""

    def __init__(self, url: str) -> None:
        self.prefix = prefix = f"dcbench-server-{uuid.uuid4().hex[:10]}"
        self.client = client = redis.Redis.from_url(url)
        self.manager = depcache.get_or_create_cache_manager(
            prefix, config=depcache.RedisConfig(url=url, prefix=prefix)
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

        self.ops: dict[str, Callable[[int], Any]] = {
            "depcache": cached,
            "redis-py:cache-aside": aside,
        }

    def close(self) -> None:
        self.manager.clear()
        for key in self.client.scan_iter(f"{self.prefix}:*", count=1000):
            self.client.delete(key)
        self.manager.close()
        self.client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def callgrind_server(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A throw-away redis-server under callgrind (no persistence, ``hz 1`` so that its timer
    adds little to the counts); yields its URL and process."""
    port = _free_port()
    log = (workdir / "valgrind.log").open("wb")
    proc = subprocess.Popen(
        [
            *("valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir}/cg.out"),
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--hz", "1"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with redis.Redis.from_url(url) as probe:
                    probe.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"redis-server under valgrind did not start: see {workdir}/valgrind.log"
                    ) from None
                time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=60)


def count_instructions(n: int) -> dict[str, dict[str, float]]:
    """Server instructions per miss and per hit of each side, under callgrind."""
    counts: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="dcbench-callgrind-") as tmp:
        workdir = Path(tmp)
        with callgrind_server(workdir) as (url, proc):
            sides = Sides(url)
            try:
                dumps = 0
                for name, op in sides.ops.items():
                    counts[name] = {}
                    for i in range(-100, 0):  # warm up: scripts loaded, indexes made
                        op(i)
                    for kind in ("miss", "hit"):  # the same n keys: new, then cached
                        _callgrind_control("--zero", str(proc.pid))
                        for i in range(n):
                            op(i)
                        dumps += 1
                        _callgrind_control(f"--dump={name}-{kind}", str(proc.pid))
                        dump = workdir / f"cg.out.{dumps}"
                        counts[name][kind] = _summary(dump) / n
            finally:
                sides.close()
    return counts


def _server_version() -> str:
    """The version ``redis-server --version`` prints (its ``v=`` field), or "unknown"."""
    try:
        out = subprocess.run(
            ["redis-server", "--version"], check=False, capture_output=True, text=True, timeout=10
        )
    except OSError:
        return "unknown"
    found = re.search(r"\bv=(\S+)", out.stdout)
    return found.group(1) if found else "unknown"


def _summary(dump: Path) -> int:
    """The instructions a callgrind dump counted (its ``summary:`` line)."""
    for line in dump.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no summary line in {dump}")


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    h.redis_url_option(parser)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count the server's instructions per miss and hit under callgrind "
        "(a throw-away redis-server; needs valgrind)",
    )
    args = parser.parse_args(argv)
    if args.instructions and not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        parser.error("--instructions needs valgrind (apt-get install valgrind)")
    n, rounds = (QUICK_N, QUICK_ROUNDS) if args.quick else (N, ROUNDS)
    admin = redis.Redis.from_url(args.redis_url)
    sides = Sides(args.redis_url)
    ops = sides.ops
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
        sides.close()
    instructions = None
    if args.instructions:
        print("counting server instructions under callgrind", flush=True)
        instructions = count_instructions(QUICK_COUNTED_N if args.quick else COUNTED_N)

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
    if instructions is not None:
        counted = QUICK_COUNTED_N if args.quick else COUNTED_N
        doc.heading("Server instructions per operation")
        doc.para(
            f"The same two sides against a throw-away redis-server {_server_version()} "
            f"running under valgrind --tool=callgrind: instructions the server executed "
            f"(networking, parsing, the commands and the scripts), {counted:,} misses then the "
            f"same {counted:,} again as hits per side, counted after 100 operations of warm-up. "
            "A count, not a time: it is the same whatever else the machine runs."
        )
        base_i = instructions["redis-py:cache-aside"]
        itable = h.Table(
            ["side", "miss instr/op", "x aside", "hit instr/op", "x aside"], right={1, 2, 3, 4}
        )
        for name, got in instructions.items():
            itable.add(
                [
                    name,
                    h.num(got["miss"], ",.0f"),
                    h.num(got["miss"] / base_i["miss"], ".2f"),
                    h.num(got["hit"], ",.0f"),
                    h.num(got["hit"] / base_i["hit"], ".2f"),
                ]
            )
        doc.table(itable)
    data = {
        "meta": meta,
        "k": K,
        "n": n,
        "rounds": rounds,
        "results": results,
        "instructions": instructions,
    }
    h.publish(
        doc,
        args,
        data,
        script="bench_server.py",
        default_markdown=h.RESULTS / "server.md",
        flags=" --instructions" if args.instructions else "",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
