#!/usr/bin/env python
"""depcache_celery benchmark: events/s through the worker against a plain kombu consumer, and
latency from publish to invalidated on every manager (issue 5).

    python bench/bench_worker.py [--broker URL] [--redis-url URL] [--quick] [--json out.json]
                                 [--markdown [PATH]] [--worker-pool solo|prefork|threads]

Measures, in one run and on one broker (RabbitMQ by default, ``--broker redis://...`` works too):

1. ``kombu consumer``: a plain kombu ``Consumer`` in this process (prefetch 100, stdlib JSON
   decode, ack each message) draining N event messages pre-published to a durable queue bound to
   a topic exchange: the baseline events/s.
2. ``depcache_celery bus consumer``: ``celery -A depcache_celery.worker worker`` as a subprocess
   (configured through the environment: ``CELERY_BROKER_URL``, ``DEPCACHE_*``, ``DEPCACHE_SETUP``
   naming a setup module that registers two managers on real Redis and one ``on_event``
   template) draining N such messages through the consumer step ``depcache_celery.install``
   adds; each event invalidates one dependency on both managers (one in ten has an entry there).
3. ``one Celery task per event``: the same worker draining N ``depcache.event`` tasks (sent with
   ``app.send_task``), for context.
4. Latency at moderate load (200 events/s for a few seconds) from publishing an event to its
   invalidation being announced by both managers (depcache publishes a JSON message on
   ``manager.invalidation_channel`` from inside the invalidation script), p50/p90/p99/max; for
   the bus consumer and, for context, for one task per event.

events/s is the steady-state rate: a subscriber in this process receives every invalidation
announcement; rate = events completed after the first batch / (time of the last batch - time
of the first batch), a batch being complete when both managers announced it. The kombu
consumer is timed the same way (from its first ack to its last). ``x kombu`` = events/s /
kombu's events/s (higher is better; the issue's target for the bus consumer is >= 0.8).

Every event is checked: each dependency must be announced by both managers, and the entries
removed must be exactly those written. Exchanges and queues are named ``dcbench.<random>.*``
and deleted at the end; Redis keys are written under ``dcbench-worker-<random>-*`` and deleted.

Exit status: 0 when everything ran and every check passed, 3 otherwise (the problems are printed
and in the JSON). Missing a target is reported, not an error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import itertools
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "bench"):  # run from a checkout without installing depcache
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import redis  # noqa: E402
from _output import Document, Table  # noqa: E402
from celery import Celery  # noqa: E402
from kombu import Connection, Consumer, Exchange, Producer, Queue  # noqa: E402

import depcache  # noqa: E402
import depcache_celery  # noqa: E402

KOMBU = "kombu consumer"
BUS = "depcache_celery bus consumer"
TASKS = "one Celery task per event"
PATHS = (KOMBU, BUS, TASKS)
PATH_CODES = {KOMBU: "k", BUS: "c", TASKS: "t"}
DESCRIPTIONS = {
    KOMBU: "kombu Consumer in this process: prefetch 100, json.loads, ack each",
    BUS: "celery -A depcache_celery.worker worker: the consumer step, batches, both managers",
    TASKS: "the same worker running one depcache.event task per event",
}
LATENCY_PATHS = (BUS, TASKS)

TARGET_RATIO = 0.8  # issue 5: bus consumer events/s >= 0.8 x the kombu consumer's
TARGET_P99_MS = 20.0  # issue 5: p99 publish -> invalidated <= 20 ms at moderate load
EVENT = "dcbench.updated"
TEMPLATE = "item:{id}"
ENTRY_EVERY = 10  # one event in ten has an entry in each manager
WORKER_START_TIMEOUT = 60.0  # seconds for a worker subprocess to start and drain its first batch
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def dependency(event_id: str) -> str:
    """What the worker's template makes of an event's id."""
    return TEMPLATE.format(id=event_id)


def event_body(event_id: str) -> bytes:
    """An event message as the depcache_celery README's schema has it."""
    return json.dumps({"event": EVENT, "data": {"id": event_id}}).encode()


@dataclass(frozen=True)
class Settings:
    events: int  # N: messages per drain of the kombu consumer and the bus consumer
    task_events: int  # N for the task-per-event drain (slower: fewer)
    repeats: int  # drains per path (median reported)
    latency_rate: float  # events/s published during the latency measurement
    latency_seconds: float  # how long they are published for
    latency_warmup: int  # events first published and not recorded
    drain_min_rate: float  # events/s below which a drain is given up (a problem)

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if quick:
            return cls(300, 200, 1, 200.0, 1.0, 10, 20.0)
        return cls(20_000, 5_000, 3, 200.0, 10.0, 50, 50.0)

    def drain_timeout(self, n: int) -> float:
        return WORKER_START_TIMEOUT + n / self.drain_min_rate


class Problem(Exception):
    """Something did not work: the measurement would be meaningless."""


# --------------------------------------------------------------------------------------------
# Watching invalidation announcements
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Announcement:
    at: float  # time.perf_counter() when this process received it
    manager: str
    dependencies: tuple[str, ...]
    removed: int


class Watcher:
    """Subscribes to every manager's invalidation channel in a thread and records, per
    dependency, when each manager announced it."""

    def __init__(self, url: str, managers: dict[str, str]) -> None:
        self.managers = managers  # channel -> manager name
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()  # type: ignore[no-untyped-call]
        self.lock = threading.Lock()
        self.seen: dict[str, dict[str, float]] = {}  # dependency -> manager -> time
        self.announcements: list[Announcement] = []
        self.errors: list[str] = []
        self._subscribed = 0
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dcbench-watcher", daemon=True)

    def start(self) -> None:
        self.pubsub.subscribe(*self.managers)
        self._thread.start()
        if not self._ready.wait(10):
            raise Problem("the invalidation channels were not subscribed within 10 s")

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                message = self.pubsub.get_message(timeout=0.2)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    self._subscribed += 1
                    if self._subscribed == len(self.managers):
                        self._ready.set()
                    continue
                if message["type"] != "message":
                    continue
                at = time.perf_counter()
                data = json.loads(message["data"])
                channel = message["channel"]
                channel = channel.decode() if isinstance(channel, bytes) else channel
                manager = self.managers[channel]
                deps = tuple(data["dependencies"])
                with self.lock:
                    self.announcements.append(Announcement(at, manager, deps, int(data["removed"])))
                    for dep in deps:
                        self.seen.setdefault(dep, {}).setdefault(manager, at)
        except Exception as exc:  # reported as a problem by whoever waits
            self.errors.append(f"the announcement watcher failed: {exc!r}")
            self._ready.set()

    def done(self, deps: list[str]) -> int:
        """How many of ``deps`` every manager announced."""
        n = len(self.managers)
        with self.lock:
            return sum(1 for dep in deps if len(self.seen.get(dep, ())) == n)

    def wait(
        self,
        deps: list[str],
        timeout: float,
        alive: Callable[[], bool],
        sample: Callable[[], None] | None = None,
    ) -> int:
        """Wait until every manager announced every one of ``deps`` (or ``timeout``, or
        ``alive()`` turning False); return how many were. ``sample()`` runs every 50 ms."""
        deadline = time.monotonic() + timeout
        remaining = list(deps)
        n = len(self.managers)
        while remaining and time.monotonic() < deadline and not self.errors and alive():
            time.sleep(0.05)
            if sample is not None:
                sample()
            with self.lock:
                remaining = [dep for dep in remaining if len(self.seen.get(dep, ())) < n]
        return len(deps) - len(remaining)

    def completed_at(self, dep: str) -> float | None:
        """When the last manager announced ``dep``."""
        with self.lock:
            times = self.seen.get(dep, {})
            return max(times.values()) if len(times) == len(self.managers) else None

    def completions(self, deps: list[str]) -> list[float]:
        """When the last manager announced each of ``deps`` (those every manager did), sorted."""
        with self.lock:
            times = [self.seen.get(dep, {}) for dep in deps]
        n = len(self.managers)
        return sorted(max(t.values()) for t in times if len(t) == n)

    def invalidations(self, deps: set[str]) -> dict[str, list[tuple[int, int]]]:
        """Per manager, the invalidations that covered ``deps``: (dependencies, removed).

        Managers may group dependencies differently (a worker may merge the batches that queued
        for a busy manager), so each manager's invalidations are listed on their own."""
        out: dict[str, list[tuple[int, int]]] = {name: [] for name in self.managers.values()}
        with self.lock:
            for a in self.announcements:
                if a.dependencies and a.dependencies[0] in deps:
                    out[a.manager].append((len(a.dependencies), a.removed))
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.pubsub.close()
        self.client.close()


# --------------------------------------------------------------------------------------------
# The worker subprocess
# --------------------------------------------------------------------------------------------

SETUP_MODULE = '''"""The DEPCACHE_SETUP module of bench_worker.py's worker (written by it)."""
import os

import depcache
import depcache_celery

for _prefix in os.environ["DCBENCH_PREFIXES"].split(","):
    depcache.get_or_create_cache_manager(
        _prefix, config=depcache.RedisConfig(url=os.environ["DCBENCH_REDIS_URL"], prefix=_prefix)
    )
depcache_celery.on_event(os.environ["DCBENCH_EVENT"], deps=[os.environ["DCBENCH_TEMPLATE"]])
'''

CONFIG_MODULE = '''"""The CELERY_CONFIG_MODULE of bench_worker.py's worker (written by it)."""
import os

task_default_queue = os.environ["DCBENCH_TASK_QUEUE"]
broker_heartbeat = 0  # stops in about a second
worker_hijack_root_logger = False
'''


@dataclass
class Run:
    """The names and servers of one benchmark run."""

    broker: str
    redis_url: str
    uid: str
    workdir: Path
    pool: str
    prefetch: int
    worker_prefetch: int
    queues: list[str] = field(default_factory=list)  # every queue declared (deleted at the end)
    worker_logs: list[Path] = field(default_factory=list)

    @property
    def exchange(self) -> str:
        return f"dcbench.{self.uid}.events"

    @property
    def dead(self) -> str:
        return f"dcbench.{self.uid}.dead"

    @property
    def tasks(self) -> str:
        return f"dcbench.{self.uid}.tasks"

    @property
    def prefix(self) -> str:
        return f"dcbench-worker-{self.uid}"

    @property
    def prefixes(self) -> list[str]:
        return [f"{self.prefix}-a", f"{self.prefix}-b"]

    def queue_name(self, what: str) -> str:
        name = f"dcbench.{self.uid}.{what}"
        self.queues.append(name)
        return name

    def settings(self, queue: str) -> depcache_celery.Settings:
        return depcache_celery.Settings(
            exchange=self.exchange,
            queue=queue,
            dead_letter_queue=self.dead,
            prefetch_count=self.worker_prefetch,
        )

    def write_modules(self) -> None:
        (self.workdir / "dcbench_setup.py").write_text(SETUP_MODULE)
        (self.workdir / "dcbench_celeryconfig.py").write_text(CONFIG_MODULE)

    def worker_env(self, queue: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join(
                [str(self.workdir), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
            ),
            CELERY_BROKER_URL=self.broker,
            CELERY_CONFIG_MODULE="dcbench_celeryconfig",
            DEPCACHE_SETUP="dcbench_setup",
            DEPCACHE_EXCHANGE=self.exchange,
            DEPCACHE_QUEUE=queue,
            DEPCACHE_DEAD_LETTER_QUEUE=self.dead,
            DEPCACHE_PREFETCH_COUNT=str(self.worker_prefetch),
            DCBENCH_TASK_QUEUE=self.tasks,
            DCBENCH_REDIS_URL=self.redis_url,
            DCBENCH_PREFIXES=",".join(self.prefixes),
            DCBENCH_EVENT=EVENT,
            DCBENCH_TEMPLATE=TEMPLATE,
        )
        for name in (
            "DEPCACHE_BINDING_KEYS",
            "DEPCACHE_BATCH_WINDOW",
            "DEPCACHE_MAX_MESSAGE_BYTES",
        ):
            env.pop(name, None)
        return env

    @contextlib.contextmanager
    def worker(self, queue: str, label: str) -> Iterator[subprocess.Popen[bytes]]:
        """``celery -A depcache_celery.worker worker`` consuming the event queue ``queue`` (and
        the task queue), as a subprocess."""
        log = self.workdir / f"worker-{label}.log"
        self.worker_logs.append(log)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "celery", "-A", "depcache_celery.worker", "worker"),
                    *("--pool", self.pool, "--loglevel", "WARNING"),
                    *(("--concurrency", "2") if self.pool != "solo" else ()),
                    *("--hostname", f"dcbench-{self.uid}-{label}@%h"),
                    *("--without-mingle", "--without-gossip", "--without-heartbeat"),
                ],
                env=self.worker_env(queue),
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def log_tail(self, lines: int = 15) -> str:
        if not self.worker_logs or not self.worker_logs[-1].exists():
            return ""
        return "\n".join(self.worker_logs[-1].read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------------------------


def channel_of(conn: Connection) -> Any:
    """The connection's default channel (typed Any: kombu's stubs lack the AMQP methods)."""
    return conn.default_channel


def topic_exchange(run: Run) -> Exchange:
    return depcache_celery.event_exchange(run.settings("unused"))


def declare_event_queue(conn: Connection, run: Run, queue: str) -> None:
    """The queue as the worker declares it: durable, bound to the topic exchange with ``#``."""
    depcache_celery.event_queue(run.settings(queue))(conn.default_channel).declare()


def publish_events(conn: Connection, run: Run, ids: list[str]) -> None:
    """Publish one event per id with a plain kombu Producer (persistent, JSON)."""
    exchange = topic_exchange(run)
    producer = Producer(conn.default_channel)
    for event_id in ids:
        producer.publish(
            event_body(event_id),
            exchange=exchange,
            routing_key=EVENT,
            declare=[exchange],
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
        )


def task_app(run: Run) -> Celery:
    app = Celery(f"dcbench-{run.uid}", broker=run.broker, set_as_current=False)
    app.conf.update(
        task_default_queue=run.tasks,
        broker_heartbeat=0,
        broker_connection_retry_on_startup=True,
    )
    return app


def publish_tasks(app: Celery, ids: list[str]) -> None:
    with app.producer_or_acquire() as producer:
        for event_id in ids:
            app.send_task(
                depcache_celery.EVENT_TASK, args=[EVENT, {"id": event_id}], producer=producer
            )


def wait_depth(conn: Connection, queue: str, n: int, timeout: float = 30.0) -> None:
    """Wait until ``queue`` holds ``n`` messages (the broker took every one published)."""
    deadline = time.monotonic() + timeout
    depth = -1
    while time.monotonic() < deadline:
        _, depth, _ = channel_of(conn).queue_declare(queue=queue, passive=True)
        if depth >= n:
            return
        time.sleep(0.05)
    raise Problem(f"queue {queue} holds {depth} messages after publishing {n}")


# --------------------------------------------------------------------------------------------
# Throughput
# --------------------------------------------------------------------------------------------


@dataclass
class Drain:
    """One drain of N messages."""

    events: int
    rate: float | None = None  # events/s, steady state
    seconds: float | None = None  # from the first completion to the last
    invalidated: int = 0  # events whose dependency every manager announced (all for kombu)
    batches: int = 0  # invalidations per manager
    mean_batch: float | None = None
    max_batch: int = 0
    entries_written: int = 0  # per manager
    entries_removed: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float | None = None  # the consumer's process, over the same span as ``rate``
    error: str | None = None

    @property
    def cpu_per_event(self) -> float | None:
        """CPU seconds the consumer's process spent per event (over the span of ``rate``)."""
        if self.cpu_seconds is None or not self.rate or not self.seconds:
            return None
        return self.cpu_seconds / (self.rate * self.seconds)


@dataclass
class PathResult:
    name: str
    drains: list[Drain] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        return [d.rate for d in self.drains if d.rate is not None]

    @property
    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None

    @property
    def spread(self) -> float | None:
        med, rates = self.median, self.rates
        if not med or len(rates) < 2:
            return None
        return (max(rates) - min(rates)) / 2 / med

    @property
    def error(self) -> str | None:
        return next((d.error for d in self.drains if d.error), None)

    @property
    def cpu_per_event(self) -> float | None:
        """Median CPU seconds per event of the consumer's process."""
        values = [d.cpu_per_event for d in self.drains if d.cpu_per_event is not None]
        return statistics.median(values) if values else None


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used, from /proc (None elsewhere)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_between(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    """CPU seconds used from ``start`` to ``end``, interpolated in (time, CPU seconds)
    samples."""

    def at(t: float) -> float | None:
        for (t0, c0), (t1, c1) in itertools.pairwise(samples):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c0
        return None

    a, b = at(start), at(end)
    return None if a is None or b is None else b - a


def steady_rate(times: list[float]) -> tuple[float | None, float | None]:
    """(events/s, seconds) from the sorted completion times of a drain's events: the events
    completed after the first completion, over the time from the first to the last."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None, None
    first = sum(1 for t in times if t == times[0])
    seconds = times[-1] - times[0]
    return (len(times) - first) / seconds, seconds


def drain_kombu(run: Run, ids: list[str]) -> Drain:
    """Pre-publish, then drain with a plain kombu consumer in this process."""
    drain = Drain(len(ids))
    queue_name = run.queue_name(f"kombu-{ids[0]}")
    with Connection(run.broker) as conn:
        declare_event_queue(conn, run, queue_name)
        publish_events(conn, run, ids)
        wait_depth(conn, queue_name, len(ids))
        acked: list[float] = []
        cpu: list[float] = []  # this process's CPU time at the first and the last ack
        loads = json.loads

        def on_message(message: Any) -> None:
            loads(message.body)
            message.ack()
            acked.append(time.perf_counter())
            if len(acked) in (1, len(ids)):
                cpu.append(time.process_time())

        channel: Any = conn.channel()
        queue = Queue(queue_name, durable=True, auto_delete=False, no_declare=True)
        with Consumer(
            channel,
            queues=[queue],
            on_message=on_message,
            prefetch_count=run.prefetch,
            auto_declare=False,
        ):
            deadline = time.monotonic() + 60 + len(ids) / 100
            while len(acked) < len(ids) and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError, OSError):  # socket.timeout: keep waiting
                    conn.drain_events(timeout=1)
        channel.close()
        channel_of(conn).queue_delete(queue_name)
    drain.invalidated = len(acked)
    drain.batches = len(acked)
    drain.mean_batch, drain.max_batch = 1.0, 1
    drain.rate, drain.seconds = steady_rate(acked)
    if len(cpu) == 2:
        drain.cpu_seconds = cpu[1] - cpu[0]
    if len(acked) < len(ids):
        drain.error = f"the kombu consumer received {len(acked)} of {len(ids)} messages"
    return drain


def fill(managers: dict[str, depcache.CacheManager], ids: list[str]) -> int:
    """One entry per ENTRY_EVERY-th event in each manager, depending on its dependency."""
    n = 0
    for event_id in ids[::ENTRY_EVERY]:
        for manager in managers.values():
            manager.set(
                f"e:{event_id}", {"id": event_id}, ttl=600, dependencies={dependency(event_id)}
            )
        n += 1
    return n


def check_drain(
    drain: Drain,
    watcher: Watcher,
    managers: dict[str, depcache.CacheManager],
    ids: list[str],
    cpu_samples: list[tuple[float, float]],
) -> None:
    """Fill in the rate, batches and entries of a worker drain from the announcements, and
    check that every event was invalidated and every entry removed."""
    deps = [dependency(event_id) for event_id in ids]
    completions = watcher.completions(deps)
    drain.rate, drain.seconds = steady_rate(completions)
    if drain.rate is not None:
        drain.cpu_seconds = cpu_between(cpu_samples, completions[0], completions[-1])
    calls = watcher.invalidations(set(deps))
    sizes = [size for per_manager in calls.values() for size, _ in per_manager]
    drain.batches = len(sizes) // max(1, len(calls))
    drain.mean_batch = sum(sizes) / len(sizes) if sizes else None
    drain.max_batch = max(sizes, default=0)
    drain.entries_removed = {
        name: sum(removed for _, removed in per_manager) for name, per_manager in calls.items()
    }
    drain.invalidated = watcher.done(deps)
    left = [
        name
        for name, manager in managers.items()
        for event_id in ids[::ENTRY_EVERY]
        if manager.exists(f"e:{event_id}")
    ]
    problems = []
    if drain.invalidated < len(ids):
        problems.append(f"{len(ids) - drain.invalidated} of {len(ids)} events not invalidated")
    if left:
        problems.append(f"{len(left)} entries still cached")
    wrong = {n: r for n, r in drain.entries_removed.items() if r != drain.entries_written}
    if wrong or len(drain.entries_removed) != len(managers):
        problems.append(
            f"entries removed per manager {drain.entries_removed}, expected "
            f"{drain.entries_written} on each"
        )
    if problems and drain.error is None:
        drain.error = "; ".join(problems)


def drain_worker(
    run: Run,
    watcher: Watcher,
    managers: dict[str, depcache.CacheManager],
    ids: list[str],
    settings: Settings,
    *,
    tasks: bool,
    keep: Callable[[subprocess.Popen[bytes], str], None] | None = None,
) -> Drain:
    """Pre-publish events (or tasks), start a worker subprocess, wait until every event was
    announced by every manager. ``keep(process, queue)`` runs with the worker still up."""
    drain = Drain(len(ids))
    drain.entries_written = fill(managers, ids)
    event_queue = run.queue_name(f"{'tq' if tasks else 'bus'}-{ids[0]}")
    with Connection(run.broker) as conn:
        if tasks:
            app = task_app(run)
            try:
                with app.connection_for_write() as tconn:
                    app.amqp.queues[run.tasks](tconn.default_channel).declare()
                publish_tasks(app, ids)
                wait_depth(conn, run.tasks, len(ids))
            finally:
                app.close()
        else:
            declare_event_queue(conn, run, event_queue)
            publish_events(conn, run, ids)
            wait_depth(conn, event_queue, len(ids))
    label = f"{'t' if tasks else 'c'}{ids[0].split('-')[0]}"
    cpu_samples: list[tuple[float, float]] = []
    with run.worker(event_queue, label) as process:

        def sample() -> None:
            cpu = process_cpu(process.pid)
            if cpu is not None:
                cpu_samples.append((time.perf_counter(), cpu))

        deps = [dependency(event_id) for event_id in ids]
        watcher.wait(deps, settings.drain_timeout(len(ids)), lambda: process.poll() is None, sample)
        sample()
        if process.poll() is not None:
            drain.error = f"the worker exited with status {process.returncode}:\n{run.log_tail()}"
        elif keep is not None:
            keep(process, event_queue)
    check_drain(drain, watcher, managers, ids, cpu_samples)
    with Connection(run.broker) as conn:
        channel_of(conn).queue_delete(event_queue)
    if watcher.errors and drain.error is None:
        drain.error = watcher.errors[0]
    return drain


# --------------------------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------------------------


@dataclass
class Latency:
    path: str
    rate: float
    published: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds
    achieved_rate: float | None = None  # what the publisher managed
    lost: int = 0
    error: str | None = None

    def pct(self, q: float) -> float | None:
        """Nearest-rank percentile, in seconds."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def measure_latency(
    run: Run,
    watcher: Watcher,
    path: str,
    settings: Settings,
    alive: Callable[[], bool],
) -> Latency:
    """Publish events at ``settings.latency_rate`` to the running worker; latency = when the
    last manager announced the event's dependency - just before it was published."""
    result = Latency(path, settings.latency_rate)
    code = "lb" if path == BUS else "lt"
    warm = [f"{code}w-{i:06d}" for i in range(settings.latency_warmup)]
    ids = [f"{code}-{i:06d}" for i in range(int(settings.latency_rate * settings.latency_seconds))]
    app = task_app(run)
    try:
        with Connection(run.broker) as conn, app.producer_or_acquire() as task_producer:
            exchange = topic_exchange(run)
            producer = Producer(conn.default_channel)

            def publish(event_id: str) -> None:
                if path == BUS:
                    producer.publish(
                        event_body(event_id),
                        exchange=exchange,
                        routing_key=EVENT,
                        declare=[exchange],
                        content_type="application/json",
                        content_encoding="utf-8",
                        delivery_mode=2,
                    )
                else:
                    app.send_task(
                        depcache_celery.EVENT_TASK,
                        args=[EVENT, {"id": event_id}],
                        producer=task_producer,
                    )

            for event_id in warm:  # the worker is up and its connections are warm
                publish(event_id)
                time.sleep(1 / settings.latency_rate)
            warm_deps = [dependency(event_id) for event_id in warm]
            if watcher.wait(warm_deps, WORKER_START_TIMEOUT, alive) < len(warm):
                raise Problem(f"warm-up events were not invalidated:\n{run.log_tail()}")
            sent: dict[str, float] = {}
            start = time.perf_counter()
            interval = 1 / settings.latency_rate
            for i, event_id in enumerate(ids):
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent[event_id] = time.perf_counter()
                publish(event_id)
            elapsed = time.perf_counter() - start
            result.published = len(ids)
            result.achieved_rate = (len(ids) - 1) / elapsed if elapsed > 0 and ids else None
        deps = [dependency(event_id) for event_id in ids]
        watcher.wait(deps, 30, alive)
        for event_id in ids:
            done = watcher.completed_at(dependency(event_id))
            if done is None:
                result.lost += 1
            else:
                result.latencies.append(done - sent[event_id])
    except Problem as exc:
        result.error = str(exc)
    finally:
        app.close()
    if result.lost and result.error is None:
        result.error = f"{result.lost} of {result.published} events not invalidated within 30 s"
    return result


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _num(value: float | None, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def _load(meta: dict[str, Any]) -> str:
    values = [meta.get("load_average_before"), meta.get("load_average_after")]
    if any(v is None for v in values):
        return "unknown"
    return " -> ".join(f"{v[0]:.1f}" for v in values if v is not None) + " at start -> end"


def _us(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e6, 2)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 3)


def ratio(results: dict[str, PathResult], name: str) -> float | None:
    a, b = results[name].median, results[KOMBU].median
    return a / b if a and b else None


def build_document(
    results: dict[str, PathResult],
    latencies: list[Latency],
    meta: dict[str, Any],
    problems: list[str],
) -> Document:
    s = meta["settings"]
    doc = Document()
    doc.heading("Throughput: events/s through the worker against a plain kombu consumer")
    doc.para(
        f"broker {meta['broker_name']} {meta['broker_version']} at {meta['broker']}, "
        f"Redis {meta['redis_server']} at {meta['redis_url']} (two managers), celery "
        f"{meta['celery']}, kombu {meta['kombu']}, python {meta['python']}, {meta['cpus']} "
        f"CPUs shared with other work (1-minute load average {_load(meta)}), worker pool "
        f"{meta['pool']}, prefetch {meta['prefetch']} (kombu) and {meta['worker_prefetch']} "
        f"(worker); depcache source: {meta['source'] or 'unknown'}.",
        f"mode: {'quick' if meta['quick'] else 'full'}: {s['repeats']} drain(s) per path, "
        f"interleaved; N = {s['events']:,} events per drain ({s['task_events']:,} for tasks), "
        "pre-published before the consumer starts; the median events/s is reported.",
    )
    table = Table(
        [
            "path",
            "events/s",
            "+-%",
            "x kombu",
            "target",
            "CPU us/event",
            "CPU x kombu",
            "N",
            "events/batch",
            "max batch",
            "invalidated",
            "entries removed",
        ],
        right={1, 2, 3, 5, 6, 7, 8, 9, 10, 11},
    )
    kombu_cpu = results[KOMBU].cpu_per_event
    for name in PATHS:
        r = results[name]
        rat = ratio(results, name)
        target = ""
        if name == BUS and rat is not None:
            target = f">={TARGET_RATIO:g} {'ok' if rat >= TARGET_RATIO else 'MISSED'}"
        batches = [d.mean_batch for d in r.drains if d.mean_batch is not None]
        removed = sum(sum(d.entries_removed.values()) for d in r.drains)
        written = sum(d.entries_written * 2 for d in r.drains)
        table.add(
            [
                name + (" (ERROR)" if r.error else ""),
                _num(r.median, ",.0f"),
                _num(r.spread, ".0f", 100),
                _num(rat, ".2f"),
                target,
                _num(r.cpu_per_event, ".1f", 1e6),
                _num(r.cpu_per_event / kombu_cpu if r.cpu_per_event and kombu_cpu else None, ".2f"),
                f"{sum(d.events for d in r.drains):,}",
                _num(statistics.mean(batches) if batches else None, ".1f"),
                str(max((d.max_batch for d in r.drains), default=0)),
                f"{sum(d.invalidated for d in r.drains):,}",
                "-" if name == KOMBU else f"{removed:,}/{written:,}",
            ]
        )
    doc.table(table)
    doc.para(
        *(f"{name}: {text}." for name, text in DESCRIPTIONS.items()),
        "events/s = events completed after the first batch / (last completion - first "
        "completion); a worker batch completes when both managers announced it, a kombu "
        "message when it is acked. x kombu = events/s / the kombu consumer's (issue 5's "
        f"target for the bus consumer: >= {TARGET_RATIO:g}). CPU us/event = CPU time (user + "
        "system) of the consuming process over the same span / events (the worker's from "
        "/proc, sampled every 50 ms; the kombu consumer's with time.process_time()): less "
        "sensitive than events/s to other work on the machine; with --worker-pool prefork the "
        "pool's child processes are not counted. events/batch = dependencies per invalidation "
        "call, over both managers (a worker may merge batches that queued for a busy manager, "
        "so managers can differ). invalidated = events whose "
        "dependency both managers announced (for kombu: messages acked); entries removed = "
        "removed / written, over both managers.",
    )

    doc.heading("Latency: publish to invalidated on every manager")
    ltable = Table(
        [
            "path",
            "rate/s",
            "events",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "min ms",
            "target",
            "lost",
        ],
        right={1, 2, 3, 4, 5, 6, 7, 9},
    )
    for lat in latencies:
        p99 = lat.pct(0.99)
        target = ""
        if lat.path == BUS and p99 is not None:
            target = f"<={TARGET_P99_MS:g} {'ok' if p99 * 1e3 <= TARGET_P99_MS else 'MISSED'}"
        ltable.add(
            [
                lat.path + (" (ERROR)" if lat.error else ""),
                _num(lat.achieved_rate, ".0f"),
                str(len(lat.latencies)),
                _num(lat.pct(0.5), ".2f", 1e3),
                _num(lat.pct(0.9), ".2f", 1e3),
                _num(p99, ".2f", 1e3),
                _num(max(lat.latencies) if lat.latencies else None, ".2f", 1e3),
                _num(min(lat.latencies) if lat.latencies else None, ".2f", 1e3),
                target,
                str(lat.lost),
            ]
        )
    doc.table(ltable)
    doc.para(
        f"Events published one by one at {s['latency_rate']:g}/s for {s['latency_seconds']:g} s "
        f"(after {s['latency_warmup']} warm-up events) to the running worker; latency = when "
        "this process received the second of the two managers' invalidation announcements for "
        "the event's dependency - time.perf_counter() just before publishing it. The "
        "announcement is published by the invalidation script itself, so this is publish -> "
        "invalidated plus one pub/sub delivery. Percentiles are nearest-rank; lost = events not "
        "announced within 30 s.",
    )
    if problems:
        doc.heading("PROBLEMS (these measurements are not valid)")
        doc.pre([f"- {problem}" for problem in problems])
    return doc


def to_json(
    results: dict[str, PathResult],
    latencies: list[Latency],
    meta: dict[str, Any],
    problems: list[str],
) -> dict[str, Any]:
    bus = ratio(results, BUS)
    return {
        "meta": meta,
        "throughput": [
            {
                "path": r.name,
                "description": DESCRIPTIONS[r.name],
                "events_per_sec_median": r.median,
                "spread": r.spread,
                "ratio_to_kombu": ratio(results, r.name),
                "cpu_us_per_event_median": _us(r.cpu_per_event),
                "error": r.error,
                "drains": [
                    {
                        "events": d.events,
                        "events_per_sec": d.rate,
                        "seconds": d.seconds,
                        "invalidated": d.invalidated,
                        "batches": d.batches,
                        "mean_batch": d.mean_batch,
                        "max_batch": d.max_batch,
                        "entries_written_per_manager": d.entries_written,
                        "entries_removed": d.entries_removed,
                        "cpu_seconds": d.cpu_seconds,
                        "cpu_us_per_event": _us(d.cpu_per_event),
                        "error": d.error,
                    }
                    for d in r.drains
                ],
            }
            for r in results.values()
        ],
        "ratios": {
            "bus_over_kombu": bus,
            "tasks_over_kombu": ratio(results, TASKS),
            "target": TARGET_RATIO,
            "target_met": None if bus is None else bus >= TARGET_RATIO,
        },
        "latency": [
            {
                "path": lat.path,
                "rate": lat.rate,
                "achieved_rate": lat.achieved_rate,
                "published": lat.published,
                "samples": len(lat.latencies),
                "p50_ms": _ms(lat.pct(0.5)),
                "p90_ms": _ms(lat.pct(0.9)),
                "p99_ms": _ms(lat.pct(0.99)),
                "max_ms": _ms(max(lat.latencies) if lat.latencies else None),
                "min_ms": _ms(min(lat.latencies) if lat.latencies else None),
                "target_p99_ms": TARGET_P99_MS if lat.path == BUS else None,
                "lost": lat.lost,
                "latencies_ms": [round(x * 1e3, 3) for x in lat.latencies],
                "error": lat.error,
            }
            for lat in latencies
        ],
        "problems": problems,
    }


# --------------------------------------------------------------------------------------------
# Set-up and clean-up
# --------------------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def source_state() -> str | None:
    """The checkout's commit, and whether depcache or depcache_celery differ from it (the
    benchmark measures the code in the working tree)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "depcache", "depcache_celery"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head} (with uncommitted changes to depcache/depcache_celery)" if dirty else head


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def broker_info(url: str) -> tuple[str, str]:
    """(broker name, server version)."""
    if url.startswith("redis"):
        with redis.Redis.from_url(url) as client:
            return "Redis", str(client.info("server").get("redis_version"))
    with Connection(url, connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=1)
        props = getattr(conn.connection, "server_properties", {}) or {}
        version = props.get("version", "?")
        product = props.get("product", "AMQP broker")
        return str(product), version.decode() if isinstance(version, bytes) else str(version)


def cleanup_broker(run: Run) -> list[str]:
    """Delete the run's queues and exchanges; return what could not be deleted."""
    failed: list[str] = []
    if run.broker.startswith("redis"):
        with redis.Redis.from_url(run.broker) as client:
            keys = list(client.scan_iter(match=f"*{run.uid}*", count=1000))
            if keys:
                client.delete(*keys)
            for member in client.zrange("_kombu.binding_deadlines", 0, -1):
                if run.uid.encode() in member:
                    client.zrem("_kombu.binding_deadlines", member)
        return failed
    with Connection(run.broker) as conn:
        channel = channel_of(conn)
        for queue in (*run.queues, run.dead, run.tasks):
            try:
                channel.queue_delete(queue)
            except Exception as exc:
                failed.append(f"queue {queue}: {exc!r}")
                channel = conn.channel()
        for exchange in (run.exchange, run.tasks):
            try:
                channel.exchange_delete(exchange)
            except Exception as exc:
                failed.append(f"exchange {exchange}: {exc!r}")
                channel = conn.channel()
    return failed


def cleanup_redis(url: str, prefix: str) -> int:
    removed = 0
    with redis.Redis.from_url(url) as admin:
        keys = list(admin.scan_iter(match=f"{prefix}-*", count=1000))
        for start in range(0, len(keys), 1000):
            removed += int(admin.unlink(*keys[start : start + 1000]))
    return removed


DEFAULT_MARKDOWN = ROOT / "bench" / "results" / "worker.md"


def run_benchmark(
    run: Run, settings: Settings, t0: float
) -> tuple[dict[str, PathResult], list[Latency], list[str]]:
    results = {name: PathResult(name) for name in PATHS}
    latencies: list[Latency] = []
    problems: list[str] = []
    managers = {
        p: depcache.get_or_create_cache_manager(
            p, config=depcache.RedisConfig(url=run.redis_url, prefix=p)
        )
        for p in run.prefixes
    }
    watcher = Watcher(run.redis_url, {m.invalidation_channel: name for name, m in managers.items()})
    watcher.start()
    try:
        order = list(PATHS)
        for rnd in range(settings.repeats):
            shift = rnd % len(order)
            last = rnd == settings.repeats - 1
            for name in order[shift:] + order[:shift]:
                code = f"{PATH_CODES[name]}{rnd}"
                n = settings.task_events if name == TASKS else settings.events
                ids = [f"{code}-{i:06d}" for i in range(n)]
                print(
                    f"{name}: drain {rnd + 1}/{settings.repeats}, {n:,} events  "
                    f"(t={time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )

                def keep(process: subprocess.Popen[bytes], queue: str, name: str = name) -> None:
                    alive = lambda: process.poll() is None  # noqa: E731
                    path = BUS if name == BUS else TASKS
                    print(f"latency, {path}  (t={time.perf_counter() - t0:.1f} s)", flush=True)
                    latencies.append(measure_latency(run, watcher, path, settings, alive))

                try:
                    if name == KOMBU:
                        drain = drain_kombu(run, ids)
                    else:
                        drain = drain_worker(
                            run,
                            watcher,
                            managers,
                            ids,
                            settings,
                            tasks=name == TASKS,
                            keep=keep if last else None,
                        )
                except Exception as exc:
                    traceback.print_exc()
                    drain = Drain(n, error=f"raised {exc!r}")
                results[name].drains.append(drain)
                if drain.error:
                    problems.append(f"[{name}, drain {rnd + 1}] {drain.error}")
                print(
                    f"  {_num(drain.rate, ',.0f')} events/s, {drain.invalidated:,} invalidated, "
                    f"{_num(drain.mean_batch, '.1f')} events/batch",
                    flush=True,
                )
    finally:
        watcher.close()
        for manager in managers.values():
            manager.close()
    latencies.sort(key=lambda lat: LATENCY_PATHS.index(lat.path))
    for lat in latencies:
        if lat.error:
            problems.append(f"[latency, {lat.path}] {lat.error}")
        print(
            f"  latency {lat.path}: p50 {_num(lat.pct(0.5), '.2f', 1e3)} ms, p99 "
            f"{_num(lat.pct(0.99), '.2f', 1e3)} ms",
            flush=True,
        )
    return results, latencies, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--broker",
        default=os.environ.get("RABBITMQ_URL", DEFAULT_BROKER),
        help=f"the broker (default: $RABBITMQ_URL or {DEFAULT_BROKER}); redis://... works too",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the Redis of the two managers (default: $REDIS_URL or redis://127.0.0.1:6379/0)",
    )
    parser.add_argument("--quick", action="store_true", help="few events, one drain (< 20 s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--markdown",
        nargs="?",
        const=str(DEFAULT_MARKDOWN),
        metavar="PATH",
        help="also write the tables as markdown (default path bench/results/worker.md)",
    )
    parser.add_argument(
        "--worker-pool",
        default="solo",
        choices=["solo", "prefork", "threads"],
        help="the worker's pool (default solo; prefork and threads run 2)",
    )
    parser.add_argument(
        "--prefetch",
        type=int,
        default=100,
        help="prefetch of the kombu consumer (default 100)",
    )
    parser.add_argument(
        "--worker-prefetch",
        type=int,
        metavar="N",
        help="the worker's depcache_prefetch_count (default: depcache_celery's default; 50 "
        "with --quick)",
    )
    args = parser.parse_args(argv)
    settings = Settings.for_mode(args.quick)
    t0 = time.perf_counter()
    uid = uuid.uuid4().hex[:10]
    workdir = Path(tempfile.mkdtemp(prefix=f"dcbench-worker-{uid}-"))
    run = Run(
        args.broker,
        args.redis_url,
        uid,
        workdir,
        args.worker_pool,
        args.prefetch,
        # --quick drains 300 events: with the default prefetch (500) they could all be one
        # batch, leaving no rate to measure; 50 keeps several batches
        args.worker_prefetch or (50 if args.quick else depcache_celery.Settings().prefetch_count),
    )
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    run.write_modules()
    print(
        f"worker benchmark ({'quick' if args.quick else 'full'}) on "
        f"{_redacted(run.broker)}: names dcbench.{uid}.*, keys {run.prefix}-*",
        flush=True,
    )
    broker_name, broker_version = broker_info(run.broker)
    with redis.Redis.from_url(run.redis_url) as admin:
        server = admin.info("server")
    try:
        results, latencies, problems = run_benchmark(run, settings, t0)
    finally:
        undeleted = cleanup_broker(run)
        removed = cleanup_redis(run.redis_url, run.prefix)
        shutil.rmtree(workdir, ignore_errors=True)
    problems += [f"[cleanup] could not delete {what}" for what in undeleted]
    meta: dict[str, Any] = {
        "broker": _redacted(run.broker),
        "broker_name": broker_name,
        "broker_version": broker_version,
        "redis_url": _redacted(run.redis_url),
        "redis_server": server.get("redis_version"),
        "celery": _version("celery"),
        "kombu": _version("kombu"),
        "redis_py": redis.__version__,
        "depcache": _version("depcache"),
        "source": source_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pool": run.pool,
        "prefetch": run.prefetch,
        "worker_prefetch": run.worker_prefetch,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "quick": args.quick,
        "settings": settings.__dict__,
        "run_uid": uid,
        "exchange": run.exchange,
        "queues": [*run.queues, run.dead, run.tasks],
        "key_prefix": run.prefix,
        "cleaned_keys": removed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_seconds": round(time.perf_counter() - t0, 1),
    }
    doc = build_document(results, latencies, meta, problems)
    print()
    print(doc.text())
    print(f"{meta['elapsed_seconds']} s; removed {removed} keys under {run.prefix}-*")
    if args.json:
        Path(args.json).write_text(
            json.dumps(to_json(results, latencies, meta, problems), indent=2) + "\n"
        )
    if args.markdown:
        command = "python bench/bench_worker.py" + (" --quick" if args.quick else "")
        if run.pool != "solo":
            command += f" --worker-pool {run.pool}"
        if run.worker_prefetch != run.prefetch:
            command += f" --worker-prefetch {run.worker_prefetch}"
        if run.prefetch != 100:
            command += f" --prefetch {run.prefetch}"
        title = f"bench_worker.py ({'quick' if args.quick else 'full'} run, {meta['started']})"
        doc.write_markdown(Path(args.markdown), title, command)
        print(f"markdown written to {args.markdown}")
    return 3 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
