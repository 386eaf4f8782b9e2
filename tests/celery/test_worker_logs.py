"""The worker's log lines carry the event id, routing key, dependency count, managers and
duration as ``logging`` fields (``extra=``), so a JSON formatter shows them: a real embedded
worker on RabbitMQ, real Redis managers, python-json-logger's formatter."""

from __future__ import annotations

import json
import logging

import pytest
from pythonjsonlogger.json import JsonFormatter

import depcache
import depcache_celery
from depcache_celery import Router, install
from depcache_celery.worker.logfields import FIELDS
from tests.support.celery_fixtures import (
    Names,
    embedded_worker,
    fill,
    make_app,
    publish_event,
    read_queue,
    wait_for,
)
from tests.support.servers import free_port

pytestmark = pytest.mark.redis

Managers = tuple[depcache.CacheManager, depcache.CacheManager]


def _router() -> Router:
    router = Router()
    router.on_event("user.updated", deps=["user:{id}", "posts:user:{id}"])
    return router


def _records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name.startswith("depcache_celery") and text in r.getMessage()
    ]


def test_a_batch_logs_one_info_line_with_the_fields_of_its_event(
    rabbitmq_broker: str,
    names: Names,
    two_managers: Managers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="depcache_celery")
    app = make_app(rabbitmq_broker, names)
    install(app, router=_router())
    for manager in two_managers:
        fill(manager, {"u1": {"user:1"}})
    with embedded_worker(app):
        event_id = depcache_celery.emit("user.updated", {"id": 1}, app=app)
        wait_for(lambda: not any(m.exists("u1") for m in two_managers), what="the event")
        wait_for(lambda: bool(_records(caplog, "batch of")), what="the batch's log line")
        publish_event(rabbitmq_broker, names.exchange, "user.deleted", b"{not json")
        read_queue(rabbitmq_broker, names.dead, 1)
    [line] = _records(caplog, "batch of")
    assert line.levelno == logging.INFO
    assert event_id in line.getMessage()
    fields = {name: getattr(line, name) for name in FIELDS}
    assert fields["event_ids"] == [event_id]
    assert fields["routing_keys"] == ["user.updated"]
    assert fields["dependency_count"] == 2
    assert fields["managers"] == sorted(m.name for m in two_managers)
    assert fields["duration_ms"] > 0
    assert line.removed == {m.name: 1 for m in two_managers}  # type: ignore[attr-defined]

    # JSON logging shows them as fields
    formatted = json.loads(JsonFormatter().format(line))
    assert formatted["event_ids"] == [event_id]
    assert formatted["routing_keys"] == ["user.updated"]
    assert formatted["dependency_count"] == 2

    [dead] = _records(caplog, "dead-lettered")
    assert dead.routing_keys == ["user.deleted"]  # type: ignore[attr-defined]
    assert dead.kind == "malformed"  # type: ignore[attr-defined]
    assert "not JSON" in dead.reason  # type: ignore[attr-defined]
    assert json.loads(JsonFormatter().format(dead))["routing_keys"] == ["user.deleted"]


def test_a_retry_and_its_dead_letter_carry_the_event_id(
    rabbitmq_broker: str,
    names: Names,
    redis_manager: depcache.CacheManager,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="depcache_celery")
    gone = f"{prefix}gone"
    depcache.get_or_create_cache_manager(
        gone, config=depcache.RedisConfig(url=f"redis://127.0.0.1:{free_port()}/0", prefix=gone)
    )
    app = make_app(
        rabbitmq_broker, names, depcache_retry_backoff_max=0.1, depcache_retry_max_age=0.5
    )
    install(app, router=_router())
    fill(redis_manager, {"u1": {"user:1"}})
    with embedded_worker(app):
        event_id = depcache_celery.emit("user.updated", {"id": 1}, app=app)
        [letter] = read_queue(rabbitmq_broker, names.dead, 1, timeout=30)
    assert json.loads(letter.body)["event_ids"] == [event_id]
    handed = _records(caplog, "handed the share")
    assert handed
    assert handed[0].event_ids == [event_id]  # type: ignore[attr-defined]
    assert handed[0].managers == [gone]  # type: ignore[attr-defined]
    retries = _records(caplog, "retrying")
    assert retries
    assert all(r.event_ids == [event_id] for r in retries)  # type: ignore[attr-defined]
    assert retries[0].attempt >= 1  # type: ignore[attr-defined]
    [expired] = _records(caplog, "dead-lettered (expired)")
    assert expired.levelno == logging.ERROR
    assert expired.event_ids == [event_id]  # type: ignore[attr-defined]
    assert expired.managers == [gone]  # type: ignore[attr-defined]
    assert expired.dependency_count == 2  # type: ignore[attr-defined]
    assert isinstance(expired.duration_ms, float)  # type: ignore[attr-defined]
