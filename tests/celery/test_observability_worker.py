"""One event, seen end to end: a real ``celery -A depcache_celery.worker worker`` subprocess
(prefork pool) on RabbitMQ with managers on two Redis deployments. The worker's setup module
installs the OpenTelemetry SDK with an exporter writing its finished spans as JSON lines, and a
python-json-logger handler; the test process emits with the SDK's in-memory exporter. Checked:
one trace from ``emit`` through the batch and every manager's share to each deployment's
invalidation, the worker's metrics page (histograms, the cache's metrics, prefork children's
counts added up in multiprocess mode), and the JSON log line of the event."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import depcache
import depcache_celery
import depcache_celery.tracing
from depcache_celery import Settings, event_queue
from tests.support.celery_fixtures import Names, fill, make_app, stop_process, wait_for
from tests.support.servers import RedisServer, free_port

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]

SETUP = """
import json
import logging
import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from pythonjsonlogger.json import JsonFormatter

import depcache
import depcache_celery


class JsonLinesExporter(SpanExporter):
    '''Finished spans as JSON lines, appended to TEST_SPANS_FILE (from every process).'''

    def export(self, spans):
        with open(os.environ["TEST_SPANS_FILE"], "a") as out:
            for span in spans:
                parent = span.parent
                out.write(json.dumps({
                    "name": span.name,
                    "kind": span.kind.name,
                    "trace_id": format(span.context.trace_id, "032x"),
                    "span_id": format(span.context.span_id, "016x"),
                    "parent_id": format(parent.span_id, "016x") if parent else None,
                    "links": [format(link.context.span_id, "016x") for link in span.links],
                    "attributes": dict(span.attributes),
                    "status": span.status.status_code.name,
                    "pid": os.getpid(),
                }) + "\\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider(resource=Resource.create({"service.name": "depcache-worker"}))
provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter()))
trace.set_tracer_provider(provider)

handler = logging.FileHandler(os.environ["TEST_LOG_FILE"])
handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s"))
logging.getLogger("depcache_celery").addHandler(handler)
logging.getLogger("depcache_celery").setLevel(logging.INFO)

for name, url in (("a", os.environ["TEST_REDIS_A"]), ("b", os.environ["TEST_REDIS_B"])):
    depcache.get_or_create_cache_manager(
        os.environ["TEST_PREFIX"] + name,
        config=depcache.RedisConfig(url=url, prefix=os.environ["TEST_PREFIX"] + name),
    )
depcache_celery.on_event("user.updated", deps=["user:{id}"])
"""

CONFIG = """
import os

task_default_queue = os.environ["TEST_TASK_QUEUE"]
broker_heartbeat = 0
"""


@pytest.fixture
def worker(
    tmp_path: Path,
    rabbitmq_broker: str,
    names: Names,
    redis_url: str,
    standalone_servers: list[RedisServer],
    prefix: str,
) -> Iterator[dict[str, Any]]:
    (tmp_path / f"setup_{names.uid}.py").write_text(textwrap.dedent(SETUP))
    (tmp_path / f"config_{names.uid}.py").write_text(textwrap.dedent(CONFIG))
    port = free_port()
    info = {
        "port": port,
        "spans": tmp_path / "spans.jsonl",
        "log": tmp_path / "worker.json.log",
        "urls": {f"{prefix}a": redis_url, f"{prefix}b": standalone_servers[0].url},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        CELERY_BROKER_URL=rabbitmq_broker,
        CELERY_CONFIG_MODULE=f"config_{names.uid}",
        DEPCACHE_SETUP=f"setup_{names.uid}",
        DEPCACHE_EXCHANGE=names.exchange,
        DEPCACHE_QUEUE=names.queue,
        DEPCACHE_DEAD_LETTER_QUEUE=names.dead,
        DEPCACHE_PROMETHEUS_PORT=str(port),
        DEPCACHE_TRACING="true",
        TEST_TASK_QUEUE=names.tasks,
        TEST_PREFIX=prefix,
        TEST_REDIS_A=redis_url,
        TEST_REDIS_B=standalone_servers[0].url,
        TEST_SPANS_FILE=str(info["spans"]),
        TEST_LOG_FILE=str(info["log"]),
    )
    # the worker's queue exists before anything is published
    settings = Settings(exchange=names.exchange, queue=names.queue)
    with Connection(rabbitmq_broker) as conn:
        event_queue(settings)(conn.default_channel).declare()
    with (tmp_path / "worker.out").open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "depcache_celery.worker", "worker"),
                *("--pool", "prefork", "--concurrency", "1", "--loglevel", "INFO"),
                *("--hostname", f"obs-{names.uid}@%h"),  # its own remote-control queue
                *("--without-mingle", "--without-gossip", "--without-heartbeat"),
            ],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    info["process"] = process
    try:
        wait_for(lambda: _metrics(port) is not None, timeout=60, what="the worker's metrics")
        yield info
    finally:
        stop_process(process)
        print((tmp_path / "worker.out").read_text())


def _metrics(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        base, _, rest = metric.partition("{")
        if base != name:
            continue
        found = ",".join(sorted(part for part in rest.rstrip("}").split(",") if part))
        found = ",".join(p for p in found.split(",") if p.split("=")[0] in labels)
        if found == wanted:
            return float(value)
    return 0.0


def _spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_one_event_through_trace_metrics_and_logs(
    worker: dict[str, Any], rabbitmq_broker: str, names: Names
) -> None:
    managers = {
        name: depcache.get_or_create_cache_manager(
            name, config=depcache.RedisConfig(url=url, prefix=name)
        )
        for name, url in worker["urls"].items()
    }
    for manager in managers.values():
        fill(manager, {"u1": {"user:1"}, "u2": {"user:2"}})
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = make_app(rabbitmq_broker, names)
    depcache_celery.tracing.enable(tracer_provider=provider)
    try:
        event_id = depcache_celery.emit("user.updated", {"id": 1}, app=app)
        app.send_task("depcache.invalidate", args=[["user:2"]])  # in the prefork child
    finally:
        depcache_celery.tracing.disable()

    def applied() -> bool:
        assert worker["process"].poll() is None, "the worker exited"
        return not any(m.exists(k) for m in managers.values() for k in ("u1", "u2"))

    wait_for(applied, timeout=30, what="the worker")

    # --- the trace: emit -> batch -> each manager's share -> each deployment's invalidation
    [published] = exporter.get_finished_spans()
    assert published.kind.name == "PRODUCER"
    assert published.name == f"publish {names.exchange}"
    attributes = dict(published.attributes or {})
    assert attributes["messaging.system"] == "rabbitmq"
    assert attributes["messaging.message.id"] == event_id
    assert attributes["messaging.rabbitmq.destination.routing_key"] == "user.updated"
    trace_id = format(published.context.trace_id, "032x")

    def ours() -> list[dict[str, Any]]:
        return [s for s in _spans(worker["spans"]) if s["trace_id"] == trace_id]

    wait_for(lambda: len(ours()) >= 5, timeout=20, what="the worker's spans")
    spans = ours()
    [batch] = [s for s in spans if s["kind"] == "CONSUMER"]
    assert batch["name"] == f"process {names.queue}"
    assert batch["parent_id"] == format(published.context.span_id, "016x")
    assert batch["attributes"]["messaging.message.id"] == event_id
    assert batch["attributes"]["messaging.batch.message_count"] == 1
    assert batch["attributes"]["messaging.operation.type"] == "process"
    assert batch["pid"] == worker["process"].pid  # the bus consumer: the main process
    shares = {
        s["attributes"]["depcache.manager"]: s
        for s in spans
        if s["name"].startswith("depcache.share")
    }
    assert set(shares) == set(managers)
    for name, share in shares.items():
        assert share["parent_id"] == batch["span_id"]
        [invalidation] = [s for s in spans if s["parent_id"] == share["span_id"]]
        assert invalidation["name"] == f"depcache.invalidate {name}"
        assert invalidation["kind"] == "CLIENT"
        assert invalidation["attributes"]["db.system.name"] == "redis"
        port = int(worker["urls"][name].rsplit(":", 1)[1].split("/")[0])
        assert invalidation["attributes"]["server.port"] == port  # each deployment
        assert invalidation["attributes"]["depcache.removed"] == 1
        assert invalidation["status"] == "UNSET"

    # --- the metrics page: latency histograms, the cache's metrics, the children's counts
    def page() -> str:
        return _metrics(worker["port"]) or ""

    for name in managers:
        wait_for(
            lambda name=name: _sample(page(), "depcache_invalidations_total", manager=name) >= 2,
            timeout=20,
            what=f"both invalidations of {name} (bus: main process; task: pool child)",
        )
    text = page()
    for name in managers:
        assert (
            _sample(text, "depcache_celery_publish_to_invalidated_seconds_count", manager=name) >= 1
        )
        assert _sample(text, "depcache_celery_apply_seconds_count", manager=name) >= 2
        assert _sample(text, "depcache_invalidated_entries_total", manager=name) == 2
    assert _sample(text, "depcache_celery_batch_seconds_count") >= 1
    assert _sample(text, "depcache_celery_events_total") == 1

    # --- the log line of the event, as JSON fields
    lines = [json.loads(line) for line in worker["log"].read_text().splitlines() if line]
    [line] = [r for r in lines if r.get("event_ids") == [event_id]]
    assert line["levelname"] == "INFO"
    assert line["routing_keys"] == ["user.updated"]
    assert line["dependency_count"] == 1
    assert line["managers"] == sorted(managers)
    assert line["duration_ms"] > 0
    assert line["outcome"] == "applied"
