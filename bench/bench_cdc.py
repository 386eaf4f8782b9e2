#!/usr/bin/env python
"""depcache cdc benchmark: row changes per second from commit to invalidated on every manager,
and commit-to-invalidated latency at a steady rate (issue 14); plus the two ways of reading a
logical slot side by side (why ``depcache cdc`` streams).

    python -m bench.bench_cdc [--broker URL] [--redis-url URL] [--dsn URI] [--quick]
                              [--json out.json] [--markdown [PATH]]

Without ``--dsn`` a PostgreSQL with ``wal_level=logical`` is started for the run (initdb in a
temp dir, tests/support/pg_server.py). Everything is real: a ``depcache cdc`` process streams the
database to the broker (RabbitMQ by default), the ready-made worker (``celery -A
depcache_celery.worker worker --pool solo``) applies the events on two managers on Redis, and a
subscriber in this process hears both managers announce each invalidation (depcache publishes
one message per invalidation, listing its dependencies, from inside the invalidation script).

1. ``throughput``: N rows inserted into ``bench_rows`` (``id int PRIMARY KEY``) in transactions
   of 100 rows, as fast as one connection commits them; rate = N / (time the last row's
   dependency ``db:public.bench_rows:id=N`` was announced by both managers - time the first
   transaction committed). Target >= 5,000 rows/s.
2. ``latency``: one single-row transaction every 2 ms (500 changes/s) for a few seconds; per
   row, the time from its commit returning to both managers having announced its dependency;
   p50/p90/p99/max. Target p99 <= 100 ms on loopback.
3. ``reading a slot``: the same N rows read from a fresh slot (no bus) by the streaming
   replication protocol (what ``depcache cdc`` uses) and by the SQL interface
   (``pg_logical_slot_peek_binary_changes`` + ``pg_replication_slot_advance``, polled every
   10 ms), each decoding every ``pgoutput`` message; and the latency of each at 500 changes/s.

Every row is checked: each one's dependency must be announced by both managers (a row missing
is a problem, printed and in the JSON). Exit status 0 when every check passed, 3 otherwise;
missing a target is reported, not an error. ``--quick`` (a smoke test runs it) uses small
counts; its figures are not meant to be graded.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from kombu import Connection

from depcache.announce import channel_for, parse_announcement
from depcache.db import column_dependency
from depcache_celery.cdc.pgoutput import Commit, Insert, decode
from depcache_celery.cdc.replication import Keepalive, ReplicationStream

try:
    from bench import _harness as h
except ModuleNotFoundError as exc:  # run as a file: bench is not importable then
    if exc.name != "bench":
        raise
    raise SystemExit("run it from the checkout as a module: python -m bench.bench_cdc") from None

from bench._harness import Document, Table

TABLE = "bench_rows"
TARGET_RATE = 5000.0
TARGET_P99_MS = 100.0

SETUP_MODULE = '''"""The DEPCACHE_SETUP module of bench_cdc.py's worker (written by it)."""
import os

import depcache

for _prefix in os.environ["CDCBENCH_PREFIXES"].split(","):
    depcache.get_or_create_cache_manager(
        _prefix, config=depcache.RedisConfig(url=os.environ["CDCBENCH_REDIS_URL"], prefix=_prefix)
    )
'''


def row_dep(i: int) -> str:
    dep = column_dependency(TABLE, "id", i)
    assert dep is not None
    return dep


@dataclass
class Run:
    broker: str
    redis_url: str
    dsn: str
    uid: str
    workdir: Path
    problems: list[str] = field(default_factory=list)

    @property
    def prefixes(self) -> list[str]:
        return [f"cdcbench-{self.uid}-a", f"cdcbench-{self.uid}-b"]

    @property
    def exchange(self) -> str:
        return f"cdcbench.{self.uid}.events"

    @property
    def queue(self) -> str:
        return f"cdcbench.{self.uid}.worker"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPCACHE_", "DEP_CACHE_"))}
        env.update(
            CELERY_BROKER_URL=self.broker,
            DEPCACHE_EXCHANGE=self.exchange,
            DEPCACHE_QUEUE=self.queue,
            DEPCACHE_DEAD_LETTER_QUEUE=f"cdcbench.{self.uid}.dead",
            DEPCACHE_SETUP="cdcbench_setup",
            CDCBENCH_PREFIXES=",".join(self.prefixes),
            CDCBENCH_REDIS_URL=self.redis_url,
            PYTHONPATH=os.pathsep.join([str(self.workdir), str(h.ROOT)]),
        )
        return env


class Announcements:
    """Hears both managers' invalidation announcements; per row id, when both had it."""

    def __init__(self, run: Run) -> None:
        self.client = redis.Redis.from_url(run.redis_url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(*(channel_for(p) for p in run.prefixes))
        self.prefixes = run.prefixes
        self.lock = threading.Lock()
        self.seen: dict[str, set[str]] = {}
        self.done: dict[int, float] = {}
        self.prefix_len = len(row_dep(0)) - 1
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message is None:
                continue
            now = time.time()
            parsed = parse_announcement(message["data"])
            with self.lock:
                for dep in parsed.dependencies:
                    if not dep.startswith(row_dep(0)[: self.prefix_len]):
                        continue
                    managers = self.seen.setdefault(dep, set())
                    managers.add(parsed.prefix)
                    if len(managers) == len(self.prefixes):
                        self.done.setdefault(int(dep[self.prefix_len :]), now)

    def wait(self, ids: range, timeout: float) -> list[int]:
        """Wait until every id was announced by both managers; return those that were not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                missing = [i for i in ids if i not in self.done]
            if not missing:
                return []
            time.sleep(0.02)
        return missing

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.pubsub.close()
        self.client.close()


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=h.ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def slot_active(dsn: str, slot: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", [slot]
        ).fetchone()
    return bool(row and row[0])


def queue_exists(broker: str, queue: str) -> bool:
    with Connection(broker) as conn:
        try:
            conn.default_channel.queue_declare(queue, passive=True)  # type: ignore[attr-defined]
        except Exception:
            return False
    return True


# --- 1 and 2: through depcache cdc, the bus and the worker ---------------------------------------


def insert_batches(dsn: str, first: int, count: int, per_txn: int) -> float:
    """Insert ids first..first+count-1; returns the time the first transaction committed."""
    started = 0.0
    with psycopg.connect(dsn) as conn:
        for start in range(first, first + count, per_txn):
            end = min(start + per_txn, first + count) - 1
            conn.execute(
                f"INSERT INTO {TABLE} SELECT i FROM generate_series(%s::int, %s::int) i",
                [start, end],
            )
            conn.commit()
            if not started:
                started = time.time()
    return started


def steady_writes(dsn: str, first: int, rate: float, seconds: float) -> dict[int, float]:
    """One single-row transaction every 1/rate s; per id, when its commit returned."""
    committed: dict[int, float] = {}
    interval = 1.0 / rate
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            due = start + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            conn.execute(f"INSERT INTO {TABLE} VALUES (%s)", [first + i])
            committed[first + i] = time.time()
            i += 1
    return committed


def pipeline(run: Run, rows: int, latency_seconds: float) -> dict[str, Any]:
    (run.workdir / "cdcbench_setup.py").write_text(SETUP_MODULE)
    slot = f"cdcbench_{run.uid}"
    env = run.env()
    result: dict[str, Any] = {}
    worker_args = [
        *(sys.executable, "-m", "celery", "-A", "depcache_celery.worker", "worker"),
        *("--pool", "solo", "--loglevel", "WARNING"),
        *("--without-mingle", "--without-gossip", "--without-heartbeat"),
    ]
    cdc_args = [
        *(sys.executable, "-m", "depcache.cli", "cdc", "--dsn", run.dsn, "--broker", run.broker),
        *("--slot", slot, "--publication", f"cdcbench_{run.uid}", "--log-level", "WARNING"),
    ]
    announcements = Announcements(run)
    try:
        with (
            process(worker_args, env, run.workdir / "worker.log"),
            process(cdc_args, env, run.workdir / "cdc.log"),
        ):
            wait_until(lambda: queue_exists(run.broker, run.queue), 60, "the worker")
            wait_until(lambda: slot_active(run.dsn, slot), 60, "depcache cdc")
            # warm up: the first events open connections
            insert_batches(run.dsn, 1, 10, 10)
            if announcements.wait(range(1, 11), 60):
                run.problems.append("the warm-up rows were not invalidated")
                for log in ("cdc.log", "worker.log"):
                    print(f"--- {log}\n{(run.workdir / log).read_text()[-3000:]}", file=sys.stderr)
                return result
            first = 1_000_001
            started = insert_batches(run.dsn, first, rows, 100)
            missing = announcements.wait(range(first, first + rows), 120)
            if missing:
                run.problems.append(f"throughput: {len(missing)} rows never invalidated")
            else:
                last = max(announcements.done[i] for i in range(first, first + rows))
                result["throughput"] = {
                    "rows": rows,
                    "seconds": last - started,
                    "rows_per_sec": rows / (last - started),
                }
            first = 2_000_001
            committed = steady_writes(run.dsn, first, 500.0, latency_seconds)
            ids = range(first, first + len(committed))
            missing = announcements.wait(ids, 60)
            if missing:
                run.problems.append(f"latency: {len(missing)} rows never invalidated")
            else:
                latencies = [(announcements.done[i] - committed[i]) * 1000 for i in ids]
                result["latency"] = summary(latencies, len(committed) / latency_seconds)
    finally:
        announcements.close()
        with contextlib.suppress(Exception), Connection(run.broker) as conn:
            for queue in (run.queue, f"cdcbench.{run.uid}.dead"):
                conn.default_channel.queue_delete(queue)  # type: ignore[attr-defined]
            conn.default_channel.exchange_delete(run.exchange)  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            drop_slot(run.dsn, slot)
    return result


def summary(latencies_ms: list[float], rate: float) -> dict[str, float | None]:
    return {
        "changes": len(latencies_ms),
        "rate_per_sec": rate,
        "p50_ms": h.median(latencies_ms),
        "p90_ms": h.percentile(latencies_ms, 0.90),
        "p99_ms": h.percentile(latencies_ms, 0.99),
        "max_ms": max(latencies_ms),
    }


# --- 3: reading a slot, streaming against polling the SQL interface ------------------------------


def make_slot(dsn: str, slot: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])


def drop_slot(dsn: str, slot: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])


def read_streaming(
    dsn: str, slot: str, publication: str, expected: int, timeout: float
) -> dict[int, float]:
    """Rows read by the streaming protocol (confirming as it goes): id -> time decoded."""
    seen: dict[int, float] = {}
    stream = ReplicationStream(dsn, slot, publication)
    stream.open()
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            for frame in stream.read(0.1):
                if isinstance(frame, Keepalive):
                    continue
                message = decode(frame.payload)
                if isinstance(message, Insert):
                    seen[int(str(message.new[0]))] = time.time()
                elif isinstance(message, Commit):
                    stream.send_status(message.end_lsn, message.end_lsn)
    finally:
        stream.close()
    return seen


def read_polling(
    dsn: str, slot: str, publication: str, expected: int, timeout: float, interval: float = 0.01
) -> dict[int, float]:
    """Rows read through the SQL interface, peeking every ``interval`` s and advancing the slot
    after each read: id -> time decoded."""
    seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while len(seen) < expected and time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes("
                "%s, NULL, NULL, 'proto_version', '1', 'publication_names', %s)",
                [slot, publication],
            ).fetchall()
            last = None
            for lsn, data in rows:
                message = decode(bytes(data))
                if isinstance(message, Insert):
                    seen[int(str(message.new[0]))] = time.time()
                elif isinstance(message, Commit):
                    last = lsn
            if last is not None:
                conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", [slot, last])
            if not rows:
                time.sleep(interval)
    return seen


READERS = {"streaming replication protocol": read_streaming, "SQL interface, polled": read_polling}


def slot_reading(run: Run, rows: int, latency_seconds: float) -> list[dict[str, Any]]:
    publication = f"cdcbench_read_{run.uid}"
    with psycopg.connect(run.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE PUBLICATION {publication} FOR TABLE {TABLE}")
    results = []
    base = 3_000_001
    for index, (name, reader) in enumerate(READERS.items()):
        slot = f"cdcbench_read_{run.uid}_{index}"
        make_slot(run.dsn, slot)
        try:
            first = base + index * 10_000_000
            insert_batches(run.dsn, first, rows, 100)
            begun = time.time()
            seen = reader(run.dsn, slot, publication, rows, 120)
            entry: dict[str, Any] = {"reader": name}
            if len(seen) < rows:
                run.problems.append(f"{name}: read {len(seen)} of {rows} rows")
                results.append(entry)
                continue
            entry["drain_rows_per_sec"] = rows / (max(seen.values()) - begun)
            # latency: the reader runs while rows are committed at 500/s
            first += 5_000_000
            expected = int(latency_seconds * 500)
            box: dict[str, dict[int, float]] = {}

            def read(
                slot: str = slot,
                reader: Any = reader,
                expected: int = expected,
                box: dict[str, dict[int, float]] = box,
            ) -> None:
                box["seen"] = reader(run.dsn, slot, publication, expected, latency_seconds + 30)

            thread = threading.Thread(target=read)
            thread.start()
            time.sleep(0.3)
            committed = steady_writes(run.dsn, first, 500.0, latency_seconds)
            thread.join()
            got = box.get("seen", {})
            latencies = [(got[i] - t) * 1000 for i, t in committed.items() if i in got]
            if len(latencies) < len(committed) * 0.99:
                run.problems.append(f"{name}: latency run read {len(latencies)} rows")
            elif latencies:
                entry["latency"] = summary(latencies, len(committed) / latency_seconds)
            results.append(entry)
        finally:
            drop_slot(run.dsn, slot)
    return results


# --- the run -------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    from tests.support.pg_server import postgres_server  # noqa: PLC0415 - only without --dsn

    with postgres_server(
        wal_level="logical", max_replication_slots="20", max_wal_senders="20"
    ) as server:
        yield server.dsn()


def report(result: dict[str, Any], quick: bool) -> Document:
    doc = Document()
    doc.heading("depcache cdc")
    doc.para(
        "commit to invalidated on both managers, through PostgreSQL logical decoding, "
        "depcache cdc, the broker and the worker"
        + (" (--quick: smoke-test sizes, not graded)" if quick else "")
    )
    pipe = Table(["measure", "value", "target"], right={1})
    throughput = result.get("pipeline", {}).get("throughput")
    if throughput:
        pipe.add(
            [
                f"rows/s ({throughput['rows']} rows, 100 per transaction)",
                f"{throughput['rows_per_sec']:,.0f}",
                f">= {TARGET_RATE:,.0f}",
            ]
        )
    latency = result.get("pipeline", {}).get("latency")
    if latency:
        for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
            target = f"<= {TARGET_P99_MS:.0f} ms" if key == "p99_ms" else ""
            pipe.add([f"latency {key[:-3]} at 500 changes/s", f"{latency[key]:.1f} ms", target])
    doc.table(pipe)
    reading = Table(
        ["reading a slot (no bus)", "drain rows/s", "p50 ms", "p99 ms"], right={1, 2, 3}
    )
    for entry in result.get("reading", []):
        lat = entry.get("latency") or {}
        reading.add(
            [
                entry["reader"],
                f"{entry.get('drain_rows_per_sec', 0):,.0f}",
                f"{lat.get('p50_ms', float('nan')):.1f}",
                f"{lat.get('p99_ms', float('nan')):.1f}",
            ]
        )
    doc.table(reading)
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = h.parser(__doc__)
    h.redis_url_option(parser)
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--dsn", help="a PostgreSQL with wal_level=logical (default: start one)")
    args = parser.parse_args(argv)
    rows = 1000 if args.quick else 50_000
    seconds = 1.0 if args.quick else 5.0
    uid = uuid.uuid4().hex[:8]
    result: dict[str, Any] = {
        "meta": h.environment(quick=args.quick, broker=args.broker, redis_url=args.redis_url)
    }
    with tempfile.TemporaryDirectory(prefix="cdcbench-") as tmp, database(args.dsn) as dsn:
        run = Run(args.broker, args.redis_url, dsn, uid, Path(tmp))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
            conn.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY)")
        try:
            result["pipeline"] = pipeline(run, rows, seconds)
            result["reading"] = slot_reading(run, rows, seconds)
        except Exception as exc:  # report, do not hide
            run.problems.append(f"{type(exc).__name__}: {exc}")
            for log in ("cdc.log", "worker.log"):
                path = run.workdir / log
                if path.exists():
                    print(f"--- {log}\n{path.read_text()[-3000:]}", file=sys.stderr)
        finally:
            with contextlib.suppress(Exception), psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
                conn.execute(f"DROP PUBLICATION IF EXISTS cdcbench_{uid}")
                conn.execute(f"DROP PUBLICATION IF EXISTS cdcbench_read_{uid}")
            client = redis.Redis.from_url(args.redis_url)
            for prefix in run.prefixes:
                keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
                if keys:
                    client.delete(*keys)
            client.close()
        result["problems"] = run.problems
    h.publish(
        report(result, args.quick),
        args,
        result,
        script="bench_cdc.py",
        default_markdown=h.RESULTS / "cdc.md",
    )
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}")
    return 3 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
