"""Fan-out under faults (issue #8, part C): a stream of events through the standalone worker
(``celery -A depcache_celery.worker worker``) while the worker is SIGKILLed and restarted, its
broker connections are cut, and one Redis deployment is stopped and started again; at the end
every dependency of every event has been invalidated on every target.

- Three targets, three managers in the worker (a ``DEPCACHE_SETUP`` module): a standalone server
  of the session, a standalone server of this test (with AOF persistence, so that what it held
  survives being stopped: its entries vanish only when invalidated) and the session's 3-master
  Cluster.
- The worker talks to RabbitMQ through :class:`tests.support.tcp_proxy.TcpProxy`, so cutting its
  connections is real; the events are published straight to RabbitMQ by a plain kombu producer
  (with publisher confirms), at a steady rate, each with 1-3 dependencies: from handler templates
  (``user.updated``), from the message's ``dependencies`` (``item.changed``), or both
  (``order.paid``). Before publishing, every target holds one entry per dependency (so
  "invalidated" is observable: the entry is gone) plus entries no event touches (they must
  survive, the stopped server's included).
- A tap handler in the worker counts every routing of every event (in the test Redis) and
  stalls on the first routing of a marked event: a SIGKILL or a cut is made while the worker
  holds that event's batch unacknowledged, so it always lands mid-batch and the batch must come
  back (routed twice). The worker also saves its counters (``depcache_celery.stats``) every
  0.2 s, so the counts of killed workers are kept (up to their last 0.2 s).

Profiles (``DEPCACHE_RELIABILITY_PROFILE``): ``short`` (default, for CI) and ``long`` (10,000
events, a 30 s Redis outage). With ``DEPCACHE_RELIABILITY_REPORT=1`` the counts are written to
``bench/results/reliability/fanout_faults.json``; they are printed in any case.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from celery import Celery
from kombu import Connection, Exchange, Producer, Queue

import depcache
from depcache_celery import Settings, event_queue
from tests.reliability.profile import PROFILE as RUN_PROFILE
from tests.reliability.profile import reporting
from tests.support.celery_fixtures import Names, stop_process
from tests.support.servers import RedisServer, redis_server
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
REPORT_FILE = ROOT / "bench" / "results" / "reliability" / "fanout_faults.json"


# --- profiles -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """How many events, how fast, and which faults when (seconds after the first publish)."""

    name: str
    events: int
    rate: float  # events published per second
    kills: tuple[float, ...]  # SIGKILL the worker (mid-batch), restart it `restart_delay` later
    cuts: tuple[tuple[float, float], ...]  # (at, seconds the proxy then refuses connections)
    outage_at: float  # stop the second standalone server ...
    outage: float  # ... for this long
    restart_delay: float
    retry_backoff_max: float
    retry_max_age: float
    drain_timeout: float  # after the last publish, for every entry to be gone
    timeout: float  # the whole test

    @property
    def stream_seconds(self) -> float:
        return self.events / self.rate


PROFILES = {
    "short": Profile(
        name="short",
        events=1500,
        rate=75.0,  # 20 s
        kills=(3.0, 13.0),  # the second while the server is down
        cuts=((7.0, 0.0), (11.0, 2.0)),  # the second while the server is down, then refusing
        outage_at=9.0,
        outage=5.0,
        restart_delay=1.0,
        retry_backoff_max=1.0,
        retry_max_age=60.0,
        drain_timeout=60.0,
        timeout=300.0,
    ),
    "long": Profile(
        name="long",
        events=10_000,
        rate=70.0,  # ~143 s
        kills=(15.0, 62.0, 110.0),
        cuts=((30.0, 0.0), (52.0, 3.0), (90.0, 0.0), (125.0, 5.0)),
        outage_at=40.0,
        outage=30.0,
        restart_delay=1.0,
        retry_backoff_max=2.0,
        retry_max_age=180.0,
        drain_timeout=180.0,
        timeout=1500.0,
    ),
}

PROFILE = PROFILES[RUN_PROFILE.name]  # the suite-wide choice (tests/reliability/profile.py)

KILL_STALL = 600.0  # seconds: the worker is killed long before
CUT_STALL = 1.5  # seconds the worker holds the marked batch while its connections are cut
KEEP = 20  # entries per target no event touches


# --- events ---------------------------------------------------------------------------------------


def event(n: int) -> tuple[str, dict[str, Any], list[str]]:
    """Event ``n``: its routing key, its message and the dependencies it must invalidate."""
    kind = n % 3
    if kind == 0:  # templates only
        return (
            "user.updated",
            {"event": "user.updated", "data": {"id": n, "n": n}},
            [
                f"user:{n}",
                f"posts:user:{n}",
            ],
        )
    if kind == 1:  # templates and the message's own dependencies
        message = {
            "event": "order.paid",
            "data": {"order_id": n, "user_id": n, "n": n},
            "dependencies": [f"cart:{n}"],
        }
        return "order.paid", message, [f"order:{n}", f"user:{n}:orders", f"cart:{n}"]
    deps = [f"item:{n}:{j}" for j in range(1 + (n // 3) % 3)]  # the message's only: 1 to 3
    return "item.changed", {"event": "item.changed", "data": {"n": n}, "dependencies": deps}, deps


def entry_key(dep: str) -> str:
    return f"e|{dep}"


# --- the worker -----------------------------------------------------------------------------------

SETUP_MODULE = """
import json
import os
import threading
import time

import redis
from celery import signals

import depcache
import depcache_celery

PREFIX = os.environ["FANOUT_PREFIX"]
_lock = threading.Lock()
_removed = {}  # entries removed, per target


def _counter(name):
    def count(event):
        with _lock:
            _removed[name] = _removed.get(name, 0) + (event.count or 0)

    return count


for target in json.loads(os.environ["FANOUT_TARGETS"]):
    _manager = depcache.get_or_create_cache_manager(
        name=target["name"],
        config=depcache.RedisConfig(
            url=target["url"], prefix=target["name"], cluster=target["cluster"]
        ),
    )
    _manager.events.on(depcache.CacheEventType.INVALIDATE, _counter(target["name"]))

depcache_celery.on_event("user.updated", deps=["user:{id}", "posts:user:{id}"])
depcache_celery.on_event("order.paid", deps=["order:{order_id}", "user:{user_id}:orders"])

_tap = redis.Redis.from_url(os.environ["FANOUT_TAP_URL"])


def tap(data):
    # count every routing of every event; stall on the first routing of a marked one
    if _tap.hincrby(PREFIX + ":routed", str(data["n"]), 1) == 1 and data.get("stall"):
        time.sleep(float(data["stall"]))
    return []


for _name in ("user.updated", "order.paid", "item.changed"):
    depcache_celery.on_event(_name)(tap)


def _save_stats(**_kwargs):
    with _lock:
        removed = dict(_removed)
    saved_at = time.time()  # before the snapshot: what happened before this time is in it
    snapshot = json.dumps(
        {**depcache_celery.stats.snapshot(), "removed_by_target": removed, "saved_at": saved_at}
    )
    _tap.hset(PREFIX + ":stats", str(os.getpid()), snapshot)


def _save_stats_forever():
    while True:
        time.sleep(0.2)
        try:
            _save_stats()
        except redis.RedisError:
            pass


threading.Thread(target=_save_stats_forever, name="fanout-stats", daemon=True).start()
signals.worker_shutdown.connect(_save_stats, weak=False)
"""

CONFIG_MODULE = """
import os

task_default_queue = os.environ["FANOUT_TASK_QUEUE"]
"""


@dataclass
class Targets:
    """The three managers (in this process) and the server that will be stopped."""

    managers: list[depcache.CacheManager]
    specs: list[dict[str, Any]]  # name, url, cluster of each (for the worker)
    flaky: RedisServer  # the second standalone server
    flaky_name: str


@dataclass
class Rig:
    """Everything the stream, the faults and the checks share."""

    tmp_path: Path
    names: Names
    prefix: str
    env: dict[str, str]
    proxy: TcpProxy
    targets: Targets
    tap: redis.Redis
    rabbitmq_url: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    hostnames: list[str] = field(default_factory=list)
    stall_requests: queue.Queue[tuple[float, queue.Queue[int]]] = field(default_factory=queue.Queue)

    @property
    def worker(self) -> subprocess.Popen[bytes]:
        return self.workers[-1]

    def start_worker(self) -> subprocess.Popen[bytes]:
        number = len(self.workers) + 1
        hostname = f"fanout{number}-{self.names.uid}@%h"
        with (self.tmp_path / f"worker{number}.log").open("wb") as out:
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "celery", "-A", "depcache_celery.worker", "worker"),
                    *("--pool", "solo", "--loglevel", "WARNING", "-n", hostname),
                    *("--without-mingle", "--without-gossip", "--without-heartbeat"),
                ],
                env=self.env,
                cwd=self.tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.workers.append(process)
        self.hostnames.append(hostname.replace("%h", os.uname().nodename))
        return process

    def logs(self) -> str:
        return "\n".join(
            f"--- worker{i}.log ---\n" + (self.tmp_path / f"worker{i}.log").read_text()[-4000:]
            for i in range(1, len(self.workers) + 1)
        )

    def check_worker(self) -> None:
        assert self.worker.poll() is None, f"the worker died\n{self.logs()}"

    def routed(self, n: int) -> int:
        return int(self.tap.hget(f"{self.prefix}:routed", str(n)) or 0)

    def counters(self, worker: subprocess.Popen[bytes]) -> dict[str, Any]:
        """The counters ``worker`` saved last (empty if none yet)."""
        raw = self.tap.hget(f"{self.prefix}:stats", str(worker.pid))
        return dict(json.loads(raw)) if raw else {}

    def wait_counters_saved(self, worker: subprocess.Popen[bytes]) -> None:
        """Wait until ``worker`` has saved its counters after this call began."""
        since = time.time()
        wait(lambda: self.counters(worker).get("saved_at", 0) > since, 30, "a counter save")

    def request_stall(self, seconds: float, timeout: float = 10.0) -> int:
        """Have the publisher mark its next event; return that event's number."""
        answer: queue.Queue[int] = queue.Queue()
        self.stall_requests.put((seconds, answer))
        return answer.get(timeout=timeout)


def wait(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> float:
    """Poll until ``condition()`` holds; return the seconds it took; raise after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - started


# --- faults ---------------------------------------------------------------------------------------


class Chaos(threading.Thread):
    """Runs the profile's faults at their times (seconds after ``t0``), recording each."""

    def __init__(self, rig: Rig, profile: Profile) -> None:
        super().__init__(name="chaos", daemon=True)
        self.rig = rig
        self.profile = profile
        self.t0 = 0.0
        self.log: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.outage_seconds = 0.0
        self.cancelled = threading.Event()
        steps: list[tuple[float, str, float]] = [(at, "kill", 0.0) for at in profile.kills]
        steps += [(at, "cut", refuse) for at, refuse in profile.cuts]
        steps += [(profile.outage_at, "redis_stop", 0.0)]
        steps += [(profile.outage_at + profile.outage, "redis_start", 0.0)]
        self.steps = sorted(steps)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self) -> None:
        stopped_at = 0.0
        for at, kind, arg in self.steps:
            if self.cancelled.wait(max(0.0, self.t0 + at - time.monotonic())):
                return  # the test failed meanwhile
            started = self.now()
            record: dict[str, Any] = {"fault": kind, "at": round(started, 2)}
            try:
                if kind == "kill":
                    record.update(self.kill())
                elif kind == "cut":
                    record.update(self.cut(arg))
                elif kind == "redis_stop":
                    self.rig.targets.flaky.stop()
                    stopped_at = time.monotonic()
                else:
                    self.rig.targets.flaky.start()
                    self.outage_seconds = time.monotonic() - stopped_at
                    record["down_seconds"] = round(self.outage_seconds, 2)
            except Exception as exc:
                self.errors.append(f"{kind} at {at} s: {exc!r}")
                record["error"] = repr(exc)
            record["took"] = round(self.now() - started, 2)
            self.log.append(record)

    def kill(self) -> dict[str, Any]:
        """SIGKILL the worker while it holds a marked event's batch; start another."""
        rig = self.rig
        n = rig.request_stall(KILL_STALL)
        wait(lambda: rig.routed(n) >= 1, 60, f"the worker to route event {n}")
        worker = rig.worker
        rig.wait_counters_saved(worker)  # as they stand while it stalls: complete
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        assert worker.returncode == -signal.SIGKILL, worker.returncode
        time.sleep(self.profile.restart_delay)
        rig.start_worker()
        return {"stalled_event": n, "worker": len(rig.workers)}

    def cut(self, refuse_for: float) -> dict[str, Any]:
        """Cut every connection of the worker while it holds a marked event's batch."""
        rig = self.rig
        n = rig.request_stall(CUT_STALL)
        wait(lambda: rig.routed(n) >= 1, 60, f"the worker to route event {n}")
        before = rig.proxy.accepted
        connections = rig.proxy.cut(refuse_for=refuse_for)
        reconnected = wait(lambda: rig.proxy.accepted > before, 60, "the worker to reconnect")
        return {
            "stalled_event": n,
            "connections_cut": connections,
            "refused_for": refuse_for,
            "reconnected_after": round(reconnected, 2),
        }


# --- fixtures -------------------------------------------------------------------------------------


def _forget_keys(urls: list[str], prefix: str) -> None:
    """Delete ``prefix*`` keys from each server (one key per DEL: cluster nodes refuse more)."""
    for url in urls:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
        try:
            pipe = client.pipeline(transaction=False)
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                pipe.delete(key)
            pipe.execute()
        except redis.RedisError:
            pass
        finally:
            client.close()


@pytest.fixture
def targets(
    standalone_servers: list[RedisServer],
    cluster_url: str,
    cluster_nodes: list[RedisServer],
    prefix: str,
) -> Iterator[Targets]:
    # always-fsynced AOF: a stopped server comes back with everything it held
    with redis_server("--appendonly", "yes", "--appendfsync", "always") as flaky:
        specs = [
            (f"{prefix}a", standalone_servers[0].url, False),
            (f"{prefix}b", flaky.url, False),
            (f"{prefix}c", cluster_url, True),
        ]
        managers = [
            depcache.get_or_create_cache_manager(
                name=name, config=depcache.RedisConfig(url=url, prefix=name, cluster=cluster)
            )
            for name, url, cluster in specs
        ]
        try:
            yield Targets(
                managers=managers,
                specs=[{"name": n, "url": u, "cluster": c} for n, u, c in specs],
                flaky=flaky,
                flaky_name=f"{prefix}b",
            )
        finally:
            _forget_keys([standalone_servers[0].url, *(n.url for n in cluster_nodes)], prefix)


@pytest.fixture
def rig(
    tmp_path: Path,
    rabbitmq_broker: str,
    names: Names,
    redis_url: str,
    prefix: str,
    targets: Targets,
) -> Iterator[Rig]:
    amqp = urlsplit(rabbitmq_broker)
    upstream = (amqp.hostname or "127.0.0.1", amqp.port or 5672)
    setup = f"fanout_setup_{names.uid}"
    config = f"fanout_config_{names.uid}"
    (tmp_path / f"{setup}.py").write_text(textwrap.dedent(SETUP_MODULE))
    (tmp_path / f"{config}.py").write_text(textwrap.dedent(CONFIG_MODULE))
    tap = redis.Redis.from_url(redis_url)
    with TcpProxy(upstream) as proxy:
        proxied = amqp._replace(netloc=f"{amqp.username}:{amqp.password}@{proxy.host}:{proxy.port}")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]
            ),
            "CELERY_BROKER_URL": proxied.geturl(),
            "CELERY_CONFIG_MODULE": config,
            "DEPCACHE_SETUP": setup,
            "DEPCACHE_EXCHANGE": names.exchange,
            "DEPCACHE_QUEUE": names.queue,
            "DEPCACHE_DEAD_LETTER_QUEUE": names.dead,
            "DEPCACHE_BATCH_WINDOW": "0.2",
            "DEPCACHE_RETRY_BACKOFF_MAX": str(PROFILE.retry_backoff_max),
            "DEPCACHE_RETRY_MAX_AGE": str(PROFILE.retry_max_age),
            "FANOUT_TASK_QUEUE": names.tasks,
            "FANOUT_PREFIX": prefix,
            "FANOUT_TAP_URL": redis_url,
            "FANOUT_TARGETS": json.dumps(targets.specs),
        }
        rig = Rig(
            tmp_path=tmp_path,
            names=names,
            prefix=prefix,
            env=env,
            proxy=proxy,
            targets=targets,
            tap=tap,
            rabbitmq_url=rabbitmq_broker,
        )
        try:
            yield rig
        finally:
            for worker in rig.workers:
                stop_process(worker)
            tap.close()


# --- checks ---------------------------------------------------------------------------------------


def _fill(manager: depcache.CacheManager, keys: dict[str, str]) -> None:
    for key, dep in keys.items():
        manager.set(key, 1, dependencies={dep})


def _present(manager: depcache.CacheManager, keys: set[str]) -> set[str]:
    return {key for key in keys if manager.exists(key)}


def _queue_depth(conn: Connection, name: str) -> tuple[int, int]:
    """(ready messages, consumers) of a durable queue, declared passively."""
    bound = Queue(name, durable=True, auto_delete=False)(conn.default_channel)
    result: Any = bound.queue_declare(passive=True)
    return int(result.message_count), int(result.consumer_count)


def _idle(app: Celery, hostname: str) -> bool:
    """Whether the worker answered and holds no task (scheduled retries, reserved, running)."""
    inspect = app.control.inspect(destination=[hostname], timeout=2.0)
    replies = [inspect.scheduled(), inspect.reserved(), inspect.active()]
    if any(not reply or hostname not in reply for reply in replies):
        return False  # busy (a solo worker answers between tasks only) or reconnecting
    return all(not reply[hostname] for reply in replies if reply)


def _sum_stats(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for snapshot in snapshots:
        for key, value in snapshot.items():
            if key == "saved_at":
                continue
            if isinstance(value, dict):
                bucket = total.setdefault(key, {})
                for name, count in value.items():
                    bucket[name] = bucket.get(name, 0) + int(count)
            else:
                total[key] = total.get(key, 0) + int(value)
    return total


LOG_PATTERNS = {
    "broker_connection_lost": r"Connection to broker lost",
    "ack_failed": r"could not acknowledge a message",
    "hand_off_failed": r"could not hand the share",
    "batch_target_failed": r"invalidation failed on manager",
    "retry_task_failed": r"\(attempt \d+\), retrying",
    "dead_lettered": r"dead-lettered",
    "tracebacks": r"Traceback \(most recent call last\)",
}


def _log_counts(rig: Rig) -> dict[str, int]:
    text = "\n".join(
        (rig.tmp_path / f"worker{i}.log").read_text(errors="replace")
        for i in range(1, len(rig.workers) + 1)
    )
    return {name: len(re.findall(pattern, text)) for name, pattern in LOG_PATTERNS.items()}


# --- the test -------------------------------------------------------------------------------------


@pytest.mark.timeout(PROFILE.timeout)
def test_fanout_under_faults_invalidates_everything_everywhere(rig: Rig) -> None:
    profile = PROFILE
    names = rig.names
    managers = rig.targets.managers
    started = time.monotonic()
    plan = [event(n) for n in range(profile.events)]
    keys = {entry_key(dep): dep for _rk, _msg, deps in plan for dep in deps}
    keep = {f"keep|{i}": f"keep:{i}" for i in range(KEEP)}
    assert len(keys) == sum(len(deps) for _rk, _msg, deps in plan)  # every dependency distinct

    # every target holds one entry per dependency, and some no event touches
    with ThreadPoolExecutor(len(managers)) as pool:
        list(pool.map(lambda m: _fill(m, {**keys, **keep}), managers))
    fill_seconds = time.monotonic() - started

    # the worker's queue exists before anything is published: nothing is lost meanwhile
    with Connection(rig.rabbitmq_url) as conn:
        event_queue(Settings(exchange=names.exchange, queue=names.queue))(
            conn.default_channel
        ).declare()
    rig.start_worker()
    wait(lambda: rig.proxy.accepted >= 1 and rig.worker.poll() is None, 60, "the first worker")

    # the stream, with the faults
    chaos = Chaos(rig, profile)
    exchange = Exchange(names.exchange, type="topic", durable=True, auto_delete=False)
    stalls: dict[int, float] = {}
    by_kind: dict[str, int] = {}
    with Connection(rig.rabbitmq_url, transport_options={"confirm_publish": True}) as conn:
        producer = Producer(conn.default_channel)
        exchange(conn.default_channel).declare()
        t0 = chaos.t0 = time.monotonic()
        chaos.start()
        published = False
        stream_seconds = 0.0
        try:
            for n, (routing_key, planned, _deps) in enumerate(plan):
                message = planned
                delay = t0 + n / profile.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                with contextlib.suppress(queue.Empty):
                    seconds, answer = rig.stall_requests.get_nowait()
                    message = {**message, "data": {**message["data"], "stall": seconds}}
                    stalls[n] = seconds
                    answer.put(n)
                producer.publish(
                    json.dumps(message).encode(),
                    exchange=exchange,
                    routing_key=routing_key,
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                )
                by_kind[routing_key] = by_kind.get(routing_key, 0) + 1
            stream_seconds = time.monotonic() - t0
            published = True
        finally:
            if not published:
                chaos.cancelled.set()
            chaos.join(timeout=120)
    assert not chaos.is_alive(), "the faults did not finish"
    assert not chaos.errors, f"{chaos.errors}\n{rig.logs()}"

    # wait until every entry is gone from every target (entries never come back: once seen
    # gone, a key is not checked again), then until the retries have all run
    remaining = {m.name: set(keys) for m in managers}
    drain_started = time.monotonic()

    def drained() -> bool:
        rig.check_worker()
        with ThreadPoolExecutor(len(managers)) as pool:
            left = list(pool.map(lambda m: _present(m, remaining[m.name]), managers))
        for manager, present in zip(managers, left, strict=True):
            remaining[manager.name] = present
        return not any(left)

    try:
        wait(drained, profile.drain_timeout, "every entry to be gone", poll=0.5)
    except TimeoutError:
        pytest.fail(
            "entries left: "
            + ", ".join(
                f"{name}: {len(left)} e.g. {sorted(left)[:3]}" for name, left in remaining.items()
            )
            + f"\n{rig.logs()}"
        )
    invalidated_after = time.monotonic() - drain_started
    control = Celery("fanout-inspect", broker=rig.rabbitmq_url, set_as_current=False)
    try:
        with Connection(rig.rabbitmq_url) as conn:

            def settled() -> bool:
                rig.check_worker()
                return (
                    _queue_depth(conn, names.queue)[0] == 0
                    and _queue_depth(conn, names.tasks)[0] == 0
                    and _idle(control, rig.hostnames[-1])
                )

            wait(settled, 60, "the queues to drain and the retries to run", poll=0.5)
            rig.wait_counters_saved(rig.worker)
            stop_process(rig.worker)  # warm shutdown: saves the counters once more
            dead_letters, _ = _queue_depth(conn, names.dead)
            tasks_left, _ = _queue_depth(conn, names.tasks)
            events_left, _ = _queue_depth(conn, names.queue)
    finally:
        control.close()
    total_seconds = time.monotonic() - started

    # every entry of every dependency is gone from every target; the others are all there
    with ThreadPoolExecutor(len(managers)) as pool:
        still = list(pool.map(lambda m: _present(m, set(keys)), managers))
        kept = list(pool.map(lambda m: _present(m, set(keep)), managers))
    routed = {int(n): int(c) for n, c in rig.tap.hgetall(f"{rig.prefix}:routed").items()}
    snapshots = [json.loads(raw) for raw in rig.tap.hvals(f"{rig.prefix}:stats")]
    counters = _sum_stats(snapshots)
    logs = _log_counts(rig)
    removed_by_target: dict[str, int] = counters.pop("removed_by_target", {})
    report: dict[str, Any] = {
        "profile": profile.name,
        "events_published": profile.events,
        "events_by_kind": by_kind,
        "publish_rate_per_s": profile.rate,
        "dependencies": len(keys),
        "targets": {
            manager.name.removeprefix(rig.prefix): {
                "deployment": spec["url"] if not spec["cluster"] else f"cluster {spec['url']}",
                "stopped_and_restarted": manager.name == rig.targets.flaky_name,
                "entries_before": len(keys) + len(keep),
                "entries_removed": len(keys) - len(left),
                "removals_counted_by_workers": removed_by_target.get(manager.name, 0),
                "dependency_entries_left": len(left),
                "untouched_entries_kept": len(kept_here),
            }
            for manager, spec, left, kept_here in zip(
                managers, rig.targets.specs, still, kept, strict=True
            )
        },
        "faults": {
            "worker_sigkills": len(profile.kills),
            "worker_processes": len(rig.workers),
            "connection_cuts": len(profile.cuts),
            "connections_cut": rig.proxy.cut_total,
            "connections_refused": rig.proxy.refused,
            "proxied_connections": rig.proxy.accepted,
            "redis_outage_seconds": round(chaos.outage_seconds, 2),
            "timeline": chaos.log,
        },
        "routing": {
            "events_routed": len(routed),
            "routings": sum(routed.values()),
            "events_routed_more_than_once": sum(1 for c in routed.values() if c > 1),
            "extra_routings": sum(routed.values()) - len(routed),
            "stalled_events": {str(n): routed.get(n, 0) for n in stalls},
        },
        "worker_counters": counters,
        "worker_log_lines": logs,
        "dead_letters_in_queue": dead_letters,
        "left_in_queues": {"events": events_left, "tasks": tasks_left},
        "seconds": {
            "fill": round(fill_seconds, 1),
            "stream": round(stream_seconds, 1),
            "invalidated_after_stream": round(invalidated_after, 1),
            "total": round(total_seconds, 1),
        },
    }
    text = json.dumps(report, indent=2, sort_keys=False)
    print(text)
    if reporting():
        REPORT_FILE.parent.mkdir(parents=True, exist_ok=True)
        REPORT_FILE.write_text(text + "\n")

    for manager, left, kept_here in zip(managers, still, kept, strict=True):
        assert not left, f"{manager.name}: {len(left)} entries not invalidated"
        assert kept_here == set(keep), f"{manager.name}: lost untouched entries"
    for manager in managers:
        # each entry was removed by exactly one counted invalidation (redelivered ones remove
        # nothing): none vanished otherwise (the stopped server's data survived its restart)
        assert removed_by_target.get(manager.name) == len(keys), (manager.name, removed_by_target)
    assert counters["events"] == sum(routed.values())  # the killed workers' counters are kept
    assert sorted(routed) == list(range(profile.events)), "an event was never routed"
    for n in stalls:  # the batch a SIGKILL or a cut caught came back
        assert routed[n] >= 2, f"event {n} was caught by a fault but routed only once"
    assert dead_letters == 0
    assert counters.get("dead_letters", {}) == {}
    failures = counters.get("target_failures", {})
    assert set(failures) == {rig.targets.flaky_name}, failures  # only the stopped server failed
    assert counters.get("retries", 0) > 0
    assert len(rig.workers) == len(profile.kills) + 1
    assert rig.proxy.cut_total >= len(profile.cuts)
