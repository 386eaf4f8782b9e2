#!/usr/bin/env python
"""depcache_celery benchmark: events/s through the worker against a plain kombu consumer, and
latency from publish to invalidated on every manager (issues 5 and 16); with ``--scale``,
several worker processes and queues; with ``--deployments N``, one worker on N Redis servers.

    python -m bench.bench_worker [--broker URL] [--redis-url URL] [--quick] [--json out.json]
                                 [--markdown [PATH]] [--worker-pool solo|prefork|threads]
                                 [--scale] [--deployments N]

Measures, in one run and on one broker (RabbitMQ by default, ``--broker redis://...`` works too):

1. ``kombu consumer``: a plain kombu ``Consumer`` in this process (prefetch 100, stdlib JSON
   decode, ack each message) draining N event messages pre-published to a durable queue bound to
   a topic exchange: the baseline events/s and CPU time per event.
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

The drains are interleaved (each round starts with the next path), 5 per path in full mode; the
median events/s and CPU per event are reported with the slowest and fastest drain (min-max).
events/s is the steady-state rate: a subscriber in this process receives every invalidation
announcement; rate = events completed after the first batch / (time of the last batch - time
of the first batch), a batch being complete when both managers announced it. The kombu
consumer is timed the same way (from its first ack to its last). ``x kombu`` = events/s /
kombu's events/s (issue 16's target for the bus consumer: >= 1.0, with <= 1.3x its CPU time per
event). ``--quick`` (one drain of 300 events) shows the ratios but grades neither.

``--scale`` (instead of 1-4): 1, 2 and 4 worker processes competing on one queue, and one worker
on each of 2 and 4 queues (one per region or service), released together once all started;
events/s once every worker consumes, and at-least-once accounting: messages delivered (the
workers' counters), invalidations applied, duplicates, lost events. ``--deployments N`` (instead
of 1-4): starts N redis-server processes, one worker with a manager on each; a drain and the
publish-to-invalidated latency on all N (issue 16's target: p99 < 50 ms).

Every event is checked: each dependency must be announced by both managers, and the entries
removed must be exactly those written. Exchanges and queues are named ``dcbench.<random>.*``
and deleted at the end; Redis keys are written under ``dcbench-worker-<random>-*`` and deleted.

Exit status: 0 when everything ran and every check passed, 3 otherwise (the problems are printed
and in the JSON). Missing a target is reported, not an error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import platform
import select
import shutil
import signal
import socket
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

import redis
from celery import Celery
from kombu import Connection, Consumer, Exchange, Producer, Queue

import depcache
import depcache_celery

try:
    from bench import _harness as h
    from bench._harness import Document, Table
except ModuleNotFoundError as exc:  # run as a file: bench is not importable then
    if exc.name != "bench":
        raise
    raise SystemExit("run it from the checkout as a module: python -m bench.bench_worker") from None

#: the checkout: the worker processes it starts import bench's modules from it (PYTHONPATH)
ROOT = Path(__file__).resolve().parent.parent

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

TARGET_RATIO = 1.0  # issue 16: bus consumer events/s >= 1.0 x the kombu consumer's
TARGET_CPU_RATIO = 1.3  # issue 16: ... with <= 1.3 x its CPU time per event
TARGET_P99_MS = 20.0  # issue 5: p99 publish -> invalidated <= 20 ms at moderate load
TARGET_DEPLOYMENTS_P99_MS = 50.0  # issue 16: p99 < 50 ms with 20 managers on 20 deployments
NOT_GRADED = "not graded in --quick"  # a few hundred events: too short a drain to grade a rate
SCALE_FULL = ((1, 1), (1, 2), (1, 4), (2, 1), (4, 1))  # (queues, worker processes per queue)
SCALE_QUICK = ((1, 1), (1, 2), (2, 1))
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
    scale_events: int  # --scale: events per configuration and drain
    scale_repeats: int  # --scale: drains per configuration (interleaved; median reported)
    scale_configs: tuple[tuple[int, int], ...]  # --scale: (queues, worker processes per queue)
    deployment_events: int  # --deployments: events of the throughput drain

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if quick:
            return cls(300, 200, 1, 200.0, 1.0, 10, 20.0, 300, 1, SCALE_QUICK, 300)
        return cls(20_000, 5_000, 9, 200.0, 10.0, 50, 50.0, 20_000, 2, SCALE_FULL, 10_000)

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
    """Subscribes to every manager's invalidation channel (one connection per Redis server,
    all read by one thread) and records, per dependency, when each manager announced it."""

    def __init__(self, managers: dict[str, str], urls: dict[str, str]) -> None:
        self.managers = managers  # channel -> manager name
        by_url: dict[str, list[str]] = {}
        for channel, url in urls.items():  # channel -> the manager's Redis
            by_url.setdefault(url, []).append(channel)
        self.clients = [redis.Redis.from_url(url) for url in by_url]
        self.channels = list(by_url.values())
        self.lock = threading.Lock()
        self.seen: dict[str, dict[str, float]] = {}  # dependency -> manager -> time
        self.announcements: list[Announcement] = []
        self.errors: list[str] = []
        self._subscribed = 0
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._pubsubs: list[Any] = []
        self._thread = threading.Thread(target=self._run, name="dcbench-watcher", daemon=True)

    def start(self) -> None:
        for client, channels in zip(self.clients, self.channels, strict=True):
            pubsub = client.pubsub()
            pubsub.subscribe(*channels)
            self._pubsubs.append(pubsub)
        self._thread.start()
        if not self._ready.wait(10):
            raise Problem("the invalidation channels were not subscribed within 10 s")

    def _run(self) -> None:
        """One thread for every server (20 deployments must not mean 20 threads competing
        with the worker for the CPUs): select() on their sockets, then read what each has."""
        try:
            by_socket = {pubsub.connection._sock: pubsub for pubsub in self._pubsubs}
            while not self._stop.is_set():
                ready, _, _ = select.select(list(by_socket), [], [], 0.2)
                for sock in ready:
                    pubsub = by_socket[sock]
                    while (message := pubsub.get_message(timeout=0)) is not None:
                        self._handle(message)
        except Exception as exc:  # reported as a problem by whoever waits
            self.errors.append(f"the announcement watcher failed: {exc!r}")
            self._ready.set()
        finally:
            for pubsub in self._pubsubs:
                pubsub.close()

    def _handle(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            self._subscribed += 1
            if self._subscribed == len(self.managers):
                self._ready.set()
            return
        if message["type"] != "message":
            return
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

    def applications(self, deps: set[str]) -> tuple[int, int]:
        """(dependency invalidations announced, distinct (dependency, manager) pairs among
        them) for ``deps``, over every manager: the difference is what was applied twice."""
        applied = 0
        distinct: set[tuple[str, str]] = set()
        with self.lock:
            for a in self.announcements:
                for dep in a.dependencies:
                    if dep in deps:
                        applied += 1
                        distinct.add((dep, a.manager))
        return applied, len(distinct)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for client in self.clients:
            client.close()


# --------------------------------------------------------------------------------------------
# The worker subprocess
# --------------------------------------------------------------------------------------------

SETUP_MODULE = '''"""The DEPCACHE_SETUP module of bench_worker.py's workers (written by it)."""
import atexit
import json
import os
import time

import depcache
import depcache_celery
from depcache_celery import stats

for _prefix, _url in json.loads(os.environ["DCBENCH_DEPLOYMENTS"]):
    depcache.get_or_create_cache_manager(
        _prefix, config=depcache.RedisConfig(url=_url, prefix=_prefix)
    )
depcache_celery.on_event(os.environ["DCBENCH_EVENT"], deps=[os.environ["DCBENCH_TEMPLATE"]])

_counts = os.environ.get("DCBENCH_COUNTS_DIR")
if _counts:  # the worker's counters (events = bus messages routed), written when it exits

    def _save_counts() -> None:
        with open(os.path.join(_counts, f"{os.getpid()}.json"), "w") as out:
            json.dump(stats.snapshot(), out)

    atexit.register(_save_counts)

_go = os.environ.get("DCBENCH_GO_FILE")
if _go:  # several workers start consuming together: wait until the benchmark says go
    open(f"{_go}.ready-{os.getpid()}", "w").close()
    _deadline = time.monotonic() + 300
    while not os.path.exists(_go) and time.monotonic() < _deadline:
        time.sleep(0.01)
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
    # (manager prefix, Redis URL) of each manager of the workers; default: two on redis_url
    deployments: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.deployments:
            self.deployments = [(f"{self.prefix}-{x}", self.redis_url) for x in "ab"]

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
        return [prefix for prefix, _ in self.deployments]

    def queue_name(self, what: str) -> str:
        name = f"dcbench.{self.uid}.{what}"
        self.queues.append(name)
        return name

    def settings(self, queue: str, binding_keys: str = "#") -> depcache_celery.Settings:
        return depcache_celery.Settings(
            exchange=self.exchange,
            queue=queue,
            binding_keys=tuple(binding_keys.split(",")),
            dead_letter_queue=self.dead,
            prefetch_count=self.worker_prefetch,
        )

    def write_modules(self) -> None:
        (self.workdir / "dcbench_setup.py").write_text(SETUP_MODULE)
        (self.workdir / "dcbench_celeryconfig.py").write_text(CONFIG_MODULE)

    def worker_env(
        self, queue: str, binding_keys: str | None = None, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
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
            DCBENCH_DEPLOYMENTS=json.dumps(self.deployments),
            DCBENCH_EVENT=EVENT,
            DCBENCH_TEMPLATE=TEMPLATE,
        )
        for name in (
            "DEPCACHE_BINDING_KEYS",
            "DEPCACHE_BATCH_WINDOW",
            "DEPCACHE_MAX_MESSAGE_BYTES",
            "DCBENCH_GO_FILE",
            "DCBENCH_COUNTS_DIR",
        ):
            env.pop(name, None)
        if binding_keys is not None:
            env["DEPCACHE_BINDING_KEYS"] = binding_keys
        env.update(extra or {})
        return env

    @contextlib.contextmanager
    def worker(
        self,
        queue: str,
        label: str,
        binding_keys: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Iterator[subprocess.Popen[bytes]]:
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
                env=self.worker_env(queue, binding_keys, extra_env),
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


def declare_event_queue(conn: Connection, run: Run, queue: str, binding_keys: str = "#") -> None:
    """The queue as the worker declares it: durable, bound to the topic exchange with
    ``binding_keys`` (comma-separated)."""
    depcache_celery.event_queue(run.settings(queue, binding_keys))(conn.default_channel).declare()


def publish_events(
    conn: Connection, run: Run, ids: list[str], routing_keys: list[str] | None = None
) -> None:
    """Publish one event per id with a plain kombu Producer (persistent, JSON), with routing
    key EVENT (or the matching one of ``routing_keys``)."""
    exchange = topic_exchange(run)
    producer = Producer(conn.default_channel)
    for index, event_id in enumerate(ids):
        producer.publish(
            event_body(event_id),
            exchange=exchange,
            routing_key=EVENT if routing_keys is None else routing_keys[index],
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
    def low(self) -> float | None:
        return min(self.rates) if self.rates else None

    @property
    def high(self) -> float | None:
        return max(self.rates) if self.rates else None

    @property
    def error(self) -> str | None:
        return next((d.error for d in self.drains if d.error), None)

    @property
    def cpus(self) -> list[float]:
        return [d.cpu_per_event for d in self.drains if d.cpu_per_event is not None]

    @property
    def cpu_per_event(self) -> float | None:
        """Median CPU seconds per event of the consumer's process."""
        return statistics.median(self.cpus) if self.cpus else None


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
# Scale: several worker processes, several queues, many deployments
# --------------------------------------------------------------------------------------------


@dataclass
class ScaleDrain:
    """One drain of N events by ``queues`` queues with ``workers`` worker processes each."""

    queues: int
    workers: int  # per queue
    events: int
    rate: float | None = None  # events/s once every worker consumes
    seconds: float | None = None
    ramp: float | None = None  # seconds from "go" until every worker consumed
    invalidated: int = 0  # events whose dependency every manager announced
    deliveries: int | None = None  # bus messages the workers routed (their "events" counters)
    applied: int = 0  # dependency invalidations announced, over the managers
    distinct: int = 0  # distinct (dependency, manager) pairs among them
    entries_written: int = 0  # per manager
    entries_left: int = 0
    cpu_seconds: float | None = None  # every worker's, over the span of ``rate``
    error: str | None = None

    @property
    def processes(self) -> int:
        return self.queues * self.workers

    @property
    def lost(self) -> int:
        return self.events - self.invalidated

    @property
    def duplicates(self) -> int:
        """Invalidations applied more than once (on a manager, for a dependency)."""
        return self.applied - self.distinct

    @property
    def redelivered(self) -> int | None:
        return None if self.deliveries is None else self.deliveries - self.events

    @property
    def cpu_per_event(self) -> float | None:
        if self.cpu_seconds is None or not self.rate or not self.seconds:
            return None
        return self.cpu_seconds / (self.rate * self.seconds)


def scale_label(queues: int, workers: int) -> str:
    return (
        f"{queues} queue{'s' if queues > 1 else ''} x {workers} worker{'s' if workers > 1 else ''}"
    )


def consumers(conn: Connection, queues: list[str]) -> list[int]:
    """How many consumers each of ``queues`` has."""
    counts = []
    for name in queues:
        _, _, count = channel_of(conn).queue_declare(queue=name, passive=True)
        counts.append(int(count))
    return counts


def release_together(
    conn: Connection,
    box: Path,
    queues: list[str],
    processes: list[subprocess.Popen[bytes]],
    workers: int,
    sample: Callable[[], None],
) -> tuple[float | None, float | None]:
    """Wait until every worker is held at its setup module (it wrote ``go.ready-<pid>`` in
    ``box``), release them (``box/go``), and wait until each queue has ``workers`` consumers.
    Returns (release time, time every queue had its consumers; None if never), or (None, None)
    when they did not all start."""

    def alive() -> bool:
        return all(process.poll() is None for process in processes)

    deadline = time.monotonic() + WORKER_START_TIMEOUT * 2
    while len(list(box.glob("go.ready-*"))) < len(processes):
        if time.monotonic() > deadline or not alive():
            return None, None
        time.sleep(0.05)
    sample()
    (box / "go").touch()
    t_go = time.perf_counter()
    while alive() and time.perf_counter() - t_go < WORKER_START_TIMEOUT:
        if all(count >= workers for count in consumers(conn, queues)):
            return t_go, time.perf_counter()
        time.sleep(0.02)
        sample()
    return t_go, None


def drain_scale(
    run: Run,
    watcher: Watcher,
    managers: dict[str, depcache.CacheManager],
    ids: list[str],
    queues: int,
    workers: int,
    settings: Settings,
) -> ScaleDrain:
    """Pre-publish ``ids`` spread over ``queues`` queues (routing key ``r<i>.<event>``, queue
    ``i`` bound with ``r<i>.#``), start ``workers`` worker processes per queue held at their
    setup module until all are up, let them go together, and wait until every event was
    announced by every manager. Then stop them and read how many messages each routed."""
    drain = ScaleDrain(queues, workers, len(ids))
    drain.entries_written = fill(managers, ids)
    tag = ids[0].split("-")[0]
    names = [run.queue_name(f"scale-{tag}-q{i}") for i in range(queues)]
    keys = [f"r{index % queues}.{EVENT}" for index in range(len(ids))]
    with Connection(run.broker) as conn:
        for i, name in enumerate(names):
            declare_event_queue(conn, run, name, f"r{i}.#")
        publish_events(conn, run, ids, keys)
        for i, name in enumerate(names):
            wait_depth(conn, name, sum(1 for key in keys if key.startswith(f"r{i}.")))
    box = run.workdir / f"scale-{tag}"
    box.mkdir()
    go = box / "go"
    env = {"DCBENCH_GO_FILE": str(go), "DCBENCH_COUNTS_DIR": str(box)}
    deps = [dependency(event_id) for event_id in ids]
    samples: list[tuple[float, float]] = []
    processes: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack, Connection(run.broker) as conn:
        for i, name in enumerate(names):
            for w in range(workers):
                label = f"s{tag}q{i}w{w}"
                processes.append(
                    stack.enter_context(run.worker(name, label, f"r{i}.#", extra_env=env))
                )

        def alive() -> bool:
            return all(process.poll() is None for process in processes)

        def sample() -> None:
            cpus = [process_cpu(process.pid) for process in processes]
            if all(cpu is not None for cpu in cpus):
                samples.append((time.perf_counter(), sum(c for c in cpus if c is not None)))

        t_go, t_all = release_together(conn, box, names, processes, workers, sample)
        if t_go is None:
            drain.error = "the workers did not start within 120 s"
            return drain
        watcher.wait(deps, settings.drain_timeout(len(ids)), alive, sample)
        sample()
        if not alive():
            drain.error = f"a worker exited early:\n{run.log_tail()}"
        for process in processes:  # stop them together (each is then waited for)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
    # the workers stopped (SIGTERM, warm shutdown): each wrote its counters as it exited
    counts = [json.loads(path.read_text()) for path in box.glob("*.json")]
    if len(counts) == len(processes):
        drain.deliveries = sum(int(c.get("events", 0)) for c in counts)
    scale_rate(drain, watcher.completions(deps), samples, t_go, t_all)
    check_scale(drain, watcher, managers, ids, len(counts), len(processes))
    with Connection(run.broker) as conn:
        for name in names:
            channel_of(conn).queue_delete(name)
    return drain


def scale_rate(
    drain: ScaleDrain,
    completions: list[float],
    samples: list[tuple[float, float]],
    t_go: float,
    t_all: float | None,
) -> None:
    """events/s once every worker consumed (from ``t_all``), and the workers' CPU then."""
    if t_all is not None:
        drain.ramp = t_all - t_go
        after = [t for t in completions if t > t_all]
        if len(after) >= 2:
            drain.seconds = after[-1] - t_all
            drain.rate = len(after) / drain.seconds
    if drain.rate is None:  # every event was done before every worker consumed: whole drain
        drain.rate, drain.seconds = steady_rate(completions)
        t_all = completions[0] if completions else None
    if drain.rate is not None and drain.seconds is not None and t_all is not None:
        drain.cpu_seconds = cpu_between(samples, t_all, t_all + drain.seconds)


def check_scale(
    drain: ScaleDrain,
    watcher: Watcher,
    managers: dict[str, depcache.CacheManager],
    ids: list[str],
    counted: int,
    processes: int,
) -> None:
    """Fill in what was invalidated, applied and left, and the drain's error if any."""
    deps = [dependency(event_id) for event_id in ids]
    drain.invalidated = watcher.done(deps)
    drain.applied, drain.distinct = watcher.applications(set(deps))
    drain.entries_left = sum(
        1
        for manager in managers.values()
        for event_id in ids[::ENTRY_EVERY]
        if manager.exists(f"e:{event_id}")
    )
    problems = []
    if drain.lost:
        problems.append(f"{drain.lost} of {len(ids)} events not invalidated on every manager")
    if drain.entries_left:
        problems.append(f"{drain.entries_left} entries still cached")
    if drain.deliveries is None:
        problems.append(f"{counted} of {processes} workers wrote their counters")
    elif drain.deliveries < len(ids):
        problems.append(f"the workers routed {drain.deliveries} messages of {len(ids)}")
    if watcher.errors:
        problems.append(watcher.errors[0])
    if problems and drain.error is None:
        drain.error = "; ".join(problems)


def run_scale(run: Run, settings: Settings, t0: float) -> tuple[list[ScaleDrain], list[str]]:
    """Every --scale configuration, ``settings.scale_repeats`` times, interleaved."""
    managers = {
        prefix: depcache.get_or_create_cache_manager(
            prefix, config=depcache.RedisConfig(url=url, prefix=prefix)
        )
        for prefix, url in run.deployments
    }
    watcher = Watcher(
        {m.invalidation_channel: name for name, m in managers.items()},
        {managers[prefix].invalidation_channel: url for prefix, url in run.deployments},
    )
    watcher.start()
    drains: list[ScaleDrain] = []
    problems: list[str] = []
    try:
        for rnd in range(settings.scale_repeats):
            for index, (queues, workers) in enumerate(settings.scale_configs):
                label = scale_label(queues, workers)
                n = settings.scale_events
                code = f"s{rnd}{index}"
                ids = [f"{code}-{i:06d}" for i in range(n)]
                print(
                    f"scale {label}: drain {rnd + 1}/{settings.scale_repeats}, {n:,} events  "
                    f"(t={time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )
                try:
                    drain = drain_scale(run, watcher, managers, ids, queues, workers, settings)
                except Exception as exc:
                    traceback.print_exc()
                    drain = ScaleDrain(queues, workers, n, error=f"raised {exc!r}")
                drains.append(drain)
                if drain.error:
                    problems.append(f"[scale {label}, drain {rnd + 1}] {drain.error}")
                print(
                    f"  {h.num(drain.rate, ',.0f')} events/s, {drain.invalidated:,} invalidated, "
                    f"deliveries {drain.deliveries}, duplicates {drain.duplicates}",
                    flush=True,
                )
    finally:
        watcher.close()
        for manager in managers.values():
            manager.close()
    return drains, problems


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_servers(n: int, workdir: Path) -> Iterator[list[str]]:
    """``n`` small redis-server processes on free loopback ports (no persistence); their URLs.
    Stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise Problem("redis-server is not on PATH: --deployments starts its own servers")
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for i in range(n):
            port = free_port()
            log = workdir / f"redis-{i}.log"
            processes.append(
                subprocess.Popen(
                    [
                        *(binary, "--port", str(port), "--bind", "127.0.0.1"),
                        *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
                        *("--maxmemory", "64mb", "--logfile", str(log)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            urls.append(f"redis://127.0.0.1:{port}/0")
        deadline = time.monotonic() + 30
        for url, process in zip(urls, processes, strict=True):
            while True:
                if process.poll() is not None:
                    raise Problem(f"redis-server for {url} exited with {process.returncode}")
                try:
                    with redis.Redis.from_url(url, socket_timeout=1) as client:
                        client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise Problem(
                            f"redis-server for {url} did not answer within 30 s"
                        ) from None
                    time.sleep(0.05)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class DeploymentsResult:
    deployments: int
    redis_server: str | None = None
    drain: Drain | None = None
    latency: Latency | None = None
    error: str | None = None


def run_deployments(
    run: Run, settings: Settings, n: int, t0: float
) -> tuple[DeploymentsResult, list[str]]:
    """One worker with ``n`` managers, one per redis-server started here: a throughput drain,
    then (with the worker still up) latency from publish to invalidated on all ``n``."""
    result = DeploymentsResult(n)
    problems: list[str] = []
    print(f"deployments: starting {n} redis-server processes  (t={time.perf_counter() - t0:.1f} s)")
    try:
        with redis_servers(n, run.workdir) as urls:
            with redis.Redis.from_url(urls[0]) as client:
                result.redis_server = str(client.info("server").get("redis_version"))
            sub = dataclasses.replace(
                run,
                deployments=[(f"{run.prefix}-d{i:02d}", url) for i, url in enumerate(urls)],
                queues=run.queues,
                worker_logs=run.worker_logs,
            )
            managers = {
                prefix: depcache.get_or_create_cache_manager(
                    prefix, config=depcache.RedisConfig(url=url, prefix=prefix)
                )
                for prefix, url in sub.deployments
            }
            watcher = Watcher(
                {m.invalidation_channel: name for name, m in managers.items()},
                {managers[prefix].invalidation_channel: url for prefix, url in sub.deployments},
            )
            watcher.start()
            try:
                ids = [f"d-{i:06d}" for i in range(settings.deployment_events)]

                def keep(process: subprocess.Popen[bytes], queue: str) -> None:
                    alive = lambda: process.poll() is None  # noqa: E731
                    print(f"deployments: latency  (t={time.perf_counter() - t0:.1f} s)", flush=True)
                    result.latency = measure_latency(sub, watcher, BUS, settings, alive)

                print(
                    f"deployments: drain, {len(ids):,} events  "
                    f"(t={time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )
                result.drain = drain_worker(
                    sub, watcher, managers, ids, settings, tasks=False, keep=keep
                )
            finally:
                watcher.close()
                for manager in managers.values():
                    manager.close()
    except Exception as exc:
        traceback.print_exc()
        result.error = f"raised {exc!r}"
    if result.error:
        problems.append(f"[deployments] {result.error}")
    if result.drain is not None and result.drain.error:
        problems.append(f"[deployments, drain] {result.drain.error}")
    if result.latency is None and result.error is None:
        problems.append("[deployments, latency] not measured")
    elif result.latency is not None and result.latency.error:
        problems.append(f"[deployments, latency] {result.latency.error}")
    return result, problems


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _load(meta: dict[str, Any]) -> str:
    values = [meta.get("load_average_before"), meta.get("load_average_after")]
    if any(v is None for v in values):
        return "unknown"
    return " -> ".join(f"{v[0]:.1f}" for v in values if v is not None) + " at start -> end"


def _us(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e6, 2)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 3)


def _range(values: list[float], spec: str, scale: float = 1.0) -> str:
    if not values:
        return "-"
    return f"{format(min(values) * scale, spec)}-{format(max(values) * scale, spec)}"


def ratio(results: dict[str, PathResult], name: str) -> float | None:
    a, b = results[name].median, results[KOMBU].median
    return a / b if a and b else None


def round_ratios(results: dict[str, PathResult], name: str) -> list[float]:
    """Per round, ``name``'s events/s / the kombu consumer's in the same round: drains of one
    round ran within seconds of each other, so slow drifts of the machine cancel out."""
    return [
        a.rate / b.rate
        for a, b in zip(results[name].drains, results[KOMBU].drains, strict=False)
        if a.rate and b.rate
    ]


def cpu_ratio(results: dict[str, PathResult], name: str) -> float | None:
    a, b = results[name].cpu_per_event, results[KOMBU].cpu_per_event
    return a / b if a and b else None


def grades(results: dict[str, PathResult], quick: bool) -> tuple[str, str]:
    """The bus consumer's grade against issue 16's targets: (events/s, CPU per event)."""
    if quick:
        return NOT_GRADED, NOT_GRADED
    rat, cpu_rat = ratio(results, BUS), cpu_ratio(results, BUS)
    return (
        "" if rat is None else f">={TARGET_RATIO:g} {'ok' if rat >= TARGET_RATIO else 'MISSED'}",
        ""
        if cpu_rat is None
        else f"<={TARGET_CPU_RATIO:g} {'ok' if cpu_rat <= TARGET_CPU_RATIO else 'MISSED'}",
    )


def conditions(meta: dict[str, Any]) -> str:
    return (
        f"broker {meta['broker_name']} {meta['broker_version']} at {meta['broker']}, "
        f"Redis {meta['redis_server']} at {meta['redis_url']}, celery {meta['celery']}, "
        f"kombu {meta['kombu']}, python {meta['python']}, {meta['cpus']} CPUs shared with "
        f"other work (1-minute load average {_load(meta)}), worker pool {meta['pool']}, "
        f"prefetch {meta['prefetch']} (kombu) and {meta['worker_prefetch']} (worker); "
        f"depcache source: {meta['source'] or 'unknown'}."
    )


def build_document(
    results: dict[str, PathResult],
    latencies: list[Latency],
    meta: dict[str, Any],
    problems: list[str],
    scale: list[ScaleDrain] | None = None,
    deployments: DeploymentsResult | None = None,
) -> Document:
    doc = Document()
    if results:
        throughput_section(doc, results, latencies, meta)
    if scale:
        scale_section(doc, scale, meta)
    if deployments is not None:
        deployments_section(doc, deployments, meta)
    if problems:
        doc.heading("PROBLEMS (these measurements are not valid)")
        doc.pre([f"- {problem}" for problem in problems])
    return doc


def throughput_section(
    doc: Document, results: dict[str, PathResult], latencies: list[Latency], meta: dict[str, Any]
) -> None:
    s = meta["settings"]
    doc.heading("Throughput: events/s through the worker against a plain kombu consumer")
    doc.para(
        conditions(meta),
        f"mode: {'quick' if meta['quick'] else 'full'}: {s['repeats']} drain(s) per path, "
        "interleaved (each round starts with the next path: kombu, worker, tasks, then worker, "
        f"tasks, kombu, ...); N = {s['events']:,} events per drain ({s['task_events']:,} for "
        "tasks), pre-published before the consumer starts; two managers on that Redis.",
    )
    table = Table(
        [
            "path",
            "events/s",
            "min-max",
            "x kombu",
            "target",
            "x kombu per round",
            "CPU us/event",
            "min-max",
            "CPU x kombu",
            "target",
            "N",
            "events/batch",
            "max batch",
            "invalidated",
            "entries removed",
        ],
        right={1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 14},
    )
    for name in PATHS:
        r = results[name]
        rat, cpu_rat = ratio(results, name), cpu_ratio(results, name)
        paired = round_ratios(results, name) if name != KOMBU else []
        target = cpu_target = ""
        if name == BUS:
            target, cpu_target = grades(results, meta["quick"])
        batches = [d.mean_batch for d in r.drains if d.mean_batch is not None]
        removed = sum(sum(d.entries_removed.values()) for d in r.drains)
        written = sum(d.entries_written * len(meta["managers"]) for d in r.drains)
        table.add(
            [
                name + (" (ERROR)" if r.error else ""),
                h.num(r.median, ",.0f"),
                _range(r.rates, ",.0f"),
                h.num(rat, ".2f"),
                target,
                (f"{statistics.median(paired):.2f} ({_range(paired, '.2f')})" if paired else ""),
                h.num(r.cpu_per_event, ".1f", 1e6),
                _range(r.cpus, ".1f", 1e6),
                h.num(cpu_rat, ".2f"),
                cpu_target,
                f"{sum(d.events for d in r.drains):,}",
                h.num(statistics.mean(batches) if batches else None, ".1f"),
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
        "message when it is acked; the median of the drains, min-max = the slowest and the "
        "fastest drain. x kombu = median events/s / the kombu consumer's median (issue 16's "
        f"target for the bus consumer: >= {TARGET_RATIO:g}). x kombu per round = per round, "
        "the path's events/s / the kombu consumer's in the same round (drains seconds apart: "
        "slow drifts of the machine cancel out), the median and min-max of the rounds. "
        "CPU us/event = CPU time (user + "
        "system) of the consuming process over the same span / events (the worker's from "
        "/proc, sampled every 50 ms; the kombu consumer's with time.process_time()), median "
        "and min-max of the drains: less sensitive than events/s to other work on the "
        "machine; CPU x kombu = median CPU us/event / the kombu consumer's (issue 16's target: "
        f"<= {TARGET_CPU_RATIO:g}). The worker's CPU includes its lanes' Redis clients (the "
        "invalidations on both managers), which the kombu consumer does not do. With "
        "--worker-pool prefork the pool's child processes are not counted. With --quick "
        "(one drain of a few hundred events, mostly start-up and the first batch) the ratios "
        f'are shown and the target columns say "{NOT_GRADED}". events/batch = dependencies '
        "per invalidation "
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
                h.num(lat.achieved_rate, ".0f"),
                str(len(lat.latencies)),
                h.num(lat.pct(0.5), ".2f", 1e3),
                h.num(lat.pct(0.9), ".2f", 1e3),
                h.num(p99, ".2f", 1e3),
                h.num(max(lat.latencies) if lat.latencies else None, ".2f", 1e3),
                h.num(min(lat.latencies) if lat.latencies else None, ".2f", 1e3),
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


def scale_section(doc: Document, drains: list[ScaleDrain], meta: dict[str, Any]) -> None:
    s = meta["settings"]
    doc.heading("Scale: worker processes competing on one queue, and one queue per region")
    doc.para(
        conditions(meta),
        f"mode: {'quick' if meta['quick'] else 'full'}: {s['scale_repeats']} drain(s) per "
        f"configuration, interleaved; N = {s['scale_events']:,} events per drain, pre-published "
        "(spread evenly over the queues) before the workers start; every worker invalidates on "
        "the same two managers.",
    )
    table = Table(
        [
            "configuration",
            "processes",
            "events/s",
            "min-max",
            "x 1 worker",
            "CPU us/event",
            "ramp s",
            "N",
            "delivered",
            "applied",
            "duplicates",
            "lost",
            "entries left",
        ],
        right=set(range(1, 13)),
    )
    groups: dict[tuple[int, int], list[ScaleDrain]] = {}
    for drain in drains:
        groups.setdefault((drain.queues, drain.workers), []).append(drain)

    def median(group: list[ScaleDrain]) -> float | None:
        rates = [d.rate for d in group if d.rate is not None]
        return statistics.median(rates) if rates else None

    base = median(groups.get((1, 1), []))
    for (queues, workers), group in groups.items():
        rates = [d.rate for d in group if d.rate is not None]
        cpus = [d.cpu_per_event for d in group if d.cpu_per_event is not None]
        ramps = [d.ramp for d in group if d.ramp is not None]
        rate = median(group)
        deliveries = [d.deliveries for d in group]
        table.add(
            [
                scale_label(queues, workers) + (" (ERROR)" if any(d.error for d in group) else ""),
                str(queues * workers),
                h.num(rate, ",.0f"),
                _range(rates, ",.0f"),
                h.num(rate / base if rate and base else None, ".2f"),
                h.num(statistics.median(cpus) if cpus else None, ".1f", 1e6),
                h.num(max(ramps) if ramps else None, ".1f"),
                f"{sum(d.events for d in group):,}",
                "-" if None in deliveries else f"{sum(d or 0 for d in deliveries):,}",
                f"{sum(d.applied for d in group):,}",
                f"{sum(d.duplicates for d in group):,}",
                f"{sum(d.lost for d in group):,}",
                f"{sum(d.entries_left for d in group):,}",
            ]
        )
    doc.table(table)
    doc.para(
        "A configuration of q queues x w workers: q durable queues bound to the topic exchange "
        "with r<i>.# (one per region or service), events published with routing key "
        "r<i>.<event> round-robin over the regions, w worker processes (celery -A "
        "depcache_celery.worker worker, pool solo) consuming each queue (competing consumers). "
        "The workers are started together and held at their setup module until all are up, "
        "then released at once; ramp s = seconds from that release until every queue had all "
        "its consumers. events/s = events completed (announced by both managers) after every "
        "worker consumed / the time from then to the last completion (the whole drain when "
        "it finished before); the median of the drains, min-max the slowest and fastest. "
        "x 1 worker = events/s / the 1 queue x 1 worker median. CPU us/event = the workers' "
        "CPU time (summed, from /proc every 50 ms) over that span / events. delivered = bus "
        "messages the workers routed (their events counters, written as each worker exited): "
        "N plus any redeliveries; applied = dependency invalidations announced, summed over "
        "both managers (2 x N when each event's invalidation ran once on each); duplicates = "
        "applied - distinct (dependency, manager) pairs, what at-least-once delivery applied "
        "twice; lost = events some manager never announced; entries left = cached entries of "
        "the drain's dependencies still present afterwards (must be 0). The machine has "
        f"{meta['cpus']} CPUs shared with RabbitMQ, Redis, this process and other work: more "
        "worker processes than CPUs compete for them.",
    )


def deployments_section(doc: Document, dep: DeploymentsResult, meta: dict[str, Any]) -> None:
    s = meta["settings"]
    doc.heading(
        f"Deployments: one worker with {dep.deployments} managers on {dep.deployments} Redis"
    )
    doc.para(
        conditions(meta),
        f"{dep.deployments} redis-server {dep.redis_server or '?'} processes started by the "
        "benchmark on free loopback ports (--save '' --appendonly no --maxmemory 64mb), one "
        "manager on each; one worker (pool solo) invalidating on all of them, one lane "
        "(thread) per manager.",
    )
    table = Table(
        [
            "managers",
            "events/s",
            "CPU us/event",
            "events/batch",
            "invalidated",
            "entries removed",
            "rate/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "target",
            "lost",
        ],
        right={0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12},
    )
    d, lat = dep.drain, dep.latency
    p99 = lat.pct(0.99) if lat is not None else None
    target = ""
    if p99 is not None:
        ok = p99 * 1e3 < TARGET_DEPLOYMENTS_P99_MS
        target = f"<{TARGET_DEPLOYMENTS_P99_MS:g} {'ok' if ok else 'MISSED'}"
    removed = sum(d.entries_removed.values()) if d is not None else 0
    table.add(
        [
            str(dep.deployments),
            h.num(d.rate if d else None, ",.0f"),
            h.num(d.cpu_per_event if d else None, ".1f", 1e6),
            h.num(d.mean_batch if d else None, ".1f"),
            f"{d.invalidated:,}/{d.events:,}" if d else "-",
            f"{removed:,}/{d.entries_written * dep.deployments:,}" if d else "-",
            h.num(lat.achieved_rate if lat else None, ".0f"),
            h.num(lat.pct(0.5) if lat else None, ".2f", 1e3),
            h.num(lat.pct(0.9) if lat else None, ".2f", 1e3),
            h.num(p99, ".2f", 1e3),
            h.num(max(lat.latencies) if lat and lat.latencies else None, ".2f", 1e3),
            target,
            str(lat.lost) if lat else "-",
        ]
    )
    doc.table(table)
    doc.para(
        f"Throughput: {s['deployment_events']:,} events pre-published, drained by the worker; "
        "an event is complete when all the managers announced its dependency (events/s, CPU "
        "us/event, events/batch and entries removed as in the throughput table, over all the "
        f"managers). Latency: then, with the worker still up, events published one by one at "
        f"{s['latency_rate']:g}/s for {s['latency_seconds']:g} s (after "
        f"{s['latency_warmup']} warm-up events); latency = when this process received the "
        "last of the managers' invalidation announcements for the event's dependency - "
        "time.perf_counter() just before publishing it (publish -> invalidated everywhere plus "
        "one pub/sub delivery); percentiles nearest-rank; lost = events not announced by every "
        f"manager within 30 s. Target (issue 16): p99 < {TARGET_DEPLOYMENTS_P99_MS:g} ms on "
        "loopback.",
    )


def drain_json(d: Drain) -> dict[str, Any]:
    return {
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


def scale_json(d: ScaleDrain) -> dict[str, Any]:
    return {
        "configuration": scale_label(d.queues, d.workers),
        "queues": d.queues,
        "workers_per_queue": d.workers,
        "processes": d.processes,
        "events": d.events,
        "events_per_sec": d.rate,
        "seconds": d.seconds,
        "ramp_seconds": d.ramp,
        "cpu_us_per_event": _us(d.cpu_per_event),
        "invalidated": d.invalidated,
        "lost": d.lost,
        "deliveries": d.deliveries,
        "redelivered": d.redelivered,
        "applied": d.applied,
        "distinct_applied": d.distinct,
        "duplicates": d.duplicates,
        "entries_written_per_manager": d.entries_written,
        "entries_left": d.entries_left,
        "error": d.error,
    }


def deployments_json(dep: DeploymentsResult) -> dict[str, Any]:
    return {
        "deployments": dep.deployments,
        "redis_server": dep.redis_server,
        "drain": drain_json(dep.drain) if dep.drain is not None else None,
        "latency": latency_json(dep.latency, TARGET_DEPLOYMENTS_P99_MS) if dep.latency else None,
        "error": dep.error,
    }


def to_json(
    results: dict[str, PathResult],
    latencies: list[Latency],
    meta: dict[str, Any],
    problems: list[str],
    scale: list[ScaleDrain] | None = None,
    deployments: DeploymentsResult | None = None,
) -> dict[str, Any]:
    quick = bool(meta["quick"])
    bus = ratio(results, BUS) if results else None
    cpu_bus = cpu_ratio(results, BUS) if results else None
    return {
        "meta": meta,
        "throughput": [
            {
                "path": r.name,
                "description": DESCRIPTIONS[r.name],
                "events_per_sec_median": r.median,
                "events_per_sec_min": r.low,
                "events_per_sec_max": r.high,
                "ratio_to_kombu": ratio(results, r.name),
                "cpu_us_per_event_median": _us(r.cpu_per_event),
                "cpu_us_per_event_min": _us(min(r.cpus, default=None)),
                "cpu_us_per_event_max": _us(max(r.cpus, default=None)),
                "cpu_ratio_to_kombu": cpu_ratio(results, r.name),
                "error": r.error,
                "drains": [drain_json(d) for d in r.drains],
            }
            for r in results.values()
        ],
        "ratios": {}
        if not results
        else {
            "bus_over_kombu": bus,
            "bus_cpu_over_kombu": cpu_bus,
            "tasks_over_kombu": ratio(results, TASKS) if results else None,
            "target": TARGET_RATIO,
            "cpu_target": TARGET_CPU_RATIO,
            "graded": not quick,
            "target_met": None if bus is None or quick else bus >= TARGET_RATIO,
            "cpu_target_met": None if cpu_bus is None or quick else cpu_bus <= TARGET_CPU_RATIO,
        },
        "latency": [
            latency_json(lat, TARGET_P99_MS if lat.path == BUS else None) for lat in latencies
        ],
        "scale": [scale_json(d) for d in scale or []],
        "deployments": deployments_json(deployments) if deployments is not None else None,
        "problems": problems,
    }


def latency_json(lat: Latency, target_ms: float | None) -> dict[str, Any]:
    return {
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
        "target_p99_ms": target_ms,
        "lost": lat.lost,
        "latencies_ms": [round(x * 1e3, 3) for x in lat.latencies],
        "error": lat.error,
    }


# --------------------------------------------------------------------------------------------
# Set-up and clean-up
# --------------------------------------------------------------------------------------------


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
DEFAULT_SCALE_MARKDOWN = ROOT / "bench" / "results" / "worker-scale.md"


def run_benchmark(
    run: Run, settings: Settings, t0: float
) -> tuple[dict[str, PathResult], list[Latency], list[str]]:
    results = {name: PathResult(name) for name in PATHS}
    latencies: list[Latency] = []
    problems: list[str] = []
    managers = {
        prefix: depcache.get_or_create_cache_manager(
            prefix, config=depcache.RedisConfig(url=url, prefix=prefix)
        )
        for prefix, url in run.deployments
    }
    watcher = Watcher(
        {m.invalidation_channel: name for name, m in managers.items()},
        {managers[prefix].invalidation_channel: url for prefix, url in run.deployments},
    )
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
                    f"  {h.num(drain.rate, ',.0f')} events/s, {drain.invalidated:,} invalidated, "
                    f"{h.num(drain.mean_batch, '.1f')} events/batch",
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
            f"  latency {lat.path}: p50 {h.num(lat.pct(0.5), '.2f', 1e3)} ms, p99 "
            f"{h.num(lat.pct(0.99), '.2f', 1e3)} ms",
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
        const="",
        metavar="PATH",
        help="also write the tables as markdown (default path bench/results/worker.md, or "
        "bench/results/worker-scale.md with --scale or --deployments)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="measure 1, 2 and 4 worker processes on one queue and one worker on each of 2 and "
        "4 queues (quick: 1 and 2 workers, 2 queues) instead of the kombu comparison",
    )
    parser.add_argument(
        "--deployments",
        type=int,
        metavar="N",
        help="measure one worker with N managers on N redis-server processes it starts "
        "(throughput and publish-to-invalidated latency) instead of the kombu comparison",
    )
    parser.add_argument(
        "--worker-pool",
        default="solo",
        choices=["solo", "prefork", "threads"],
        help="the worker's pool (default solo; prefork and threads run 2)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help="drains per path (default 9; 1 with --quick): each round drains every path once",
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
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        settings = dataclasses.replace(settings, repeats=args.rounds)
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
    load_before = h.load_average()
    run.write_modules()
    print(
        f"worker benchmark ({'quick' if args.quick else 'full'}) on "
        f"{h.mask_url(run.broker)}: names dcbench.{uid}.*, keys {run.prefix}-*",
        flush=True,
    )
    broker_name, broker_version = broker_info(run.broker)
    with redis.Redis.from_url(run.redis_url) as admin:
        server = admin.info("server")
    results: dict[str, PathResult] = {}
    latencies: list[Latency] = []
    problems: list[str] = []
    scale: list[ScaleDrain] = []
    deployments: DeploymentsResult | None = None
    try:
        if not args.scale and not args.deployments:
            results, latencies, problems = run_benchmark(run, settings, t0)
        if args.scale:
            scale, more = run_scale(run, settings, t0)
            problems += more
        if args.deployments:
            deployments, more = run_deployments(run, settings, args.deployments, t0)
            problems += more
    finally:
        undeleted = cleanup_broker(run)
        removed = cleanup_redis(run.redis_url, run.prefix)
        shutil.rmtree(workdir, ignore_errors=True)
    problems += [f"[cleanup] could not delete {what}" for what in undeleted]
    meta: dict[str, Any] = {
        "broker": h.mask_url(run.broker),
        "broker_name": broker_name,
        "broker_version": broker_version,
        "redis_url": h.mask_url(run.redis_url),
        "redis_server": server.get("redis_version"),
        "celery": h.version("celery"),
        "kombu": h.version("kombu"),
        "redis_py": redis.__version__,
        "depcache": h.version("depcache"),
        "source": source_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pool": run.pool,
        "prefetch": run.prefetch,
        "worker_prefetch": run.worker_prefetch,
        "managers": run.prefixes,
        "load_average_before": load_before,
        "load_average_after": h.load_average(),
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
    doc = build_document(results, latencies, meta, problems, scale, deployments)
    print()
    print(doc.text())
    print(f"{meta['elapsed_seconds']} s; removed {removed} keys under {run.prefix}-*")
    if args.json:
        data = to_json(results, latencies, meta, problems, scale, deployments)
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    if args.markdown is not None:
        if not args.markdown:
            args.markdown = str(
                DEFAULT_SCALE_MARKDOWN if args.scale or args.deployments else DEFAULT_MARKDOWN
            )
        command = "python -m bench.bench_worker" + (" --quick" if args.quick else "")
        command += " --scale" if args.scale else ""
        command += f" --deployments {args.deployments}" if args.deployments else ""
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
