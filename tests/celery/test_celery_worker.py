"""depcache_celery end to end: a real embedded worker on RabbitMQ and on Redis as the broker,
real Redis managers, and producers that are not Celery (kombu, the ``amqp`` library)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import unquote, urlsplit

import amqp
import pytest

import depcache
import depcache_celery
from depcache_celery import Router, install
from depcache_celery.worker.deadletter import KIND_HEADER, REASON_HEADER
from tests.support.celery_fixtures import (
    Names,
    embedded_worker,
    fill,
    make_app,
    publish_event,
    read_queue,
    wait_for,
)

pytestmark = pytest.mark.redis

Managers = tuple[depcache.CacheManager, depcache.CacheManager]


def _entries_gone(managers: Managers, *keys: str) -> bool:
    return not any(m.exists(k) for m in managers for k in keys)


def _user_router() -> Router:
    router = Router()
    router.on_event("user.updated", deps=["user:{id}", "posts:user:{id}"])
    return router


def _fill_users(managers: Managers) -> None:
    for manager in managers:
        fill(
            manager,
            {"u1": {"user:1"}, "p1": {"posts:user:1"}, "u2": {"user:2"}, "both": {"x", "user:1"}},
        )


def test_invalidate_task_reaches_every_manager(
    broker_url: str, names: Names, two_managers: Managers
) -> None:
    app = make_app(broker_url, names)
    install(app)
    _fill_users(two_managers)
    with embedded_worker(app):
        app.send_task("depcache.invalidate", args=[["user:1"]])
        wait_for(lambda: _entries_gone(two_managers, "u1", "both"), what="the invalidation")
    for manager in two_managers:
        assert manager.exists("p1")
        assert manager.exists("u2")


def test_invalidate_task_targets_named_managers(
    rabbitmq_broker: str, names: Names, two_managers: Managers
) -> None:
    app = make_app(rabbitmq_broker, names)
    install(app)
    first, second = two_managers
    _fill_users(two_managers)
    with embedded_worker(app):
        app.send_task("depcache.invalidate", args=[["user:1"], [second.name]])
        wait_for(lambda: not second.exists("u1"), what="the invalidation")
    assert first.exists("u1")


def test_event_task_with_declarative_handler(
    rabbitmq_broker: str, names: Names, two_managers: Managers
) -> None:
    app = make_app(rabbitmq_broker, names)
    install(app, router=_user_router())
    _fill_users(two_managers)
    with embedded_worker(app):
        app.send_task("depcache.event", args=["user.updated", {"id": 1}])
        wait_for(lambda: _entries_gone(two_managers, "u1", "p1", "both"), what="the event")
        # an event the router cannot fill is dead-lettered with the reason
        app.send_task("depcache.event", args=["user.updated", {"name": "no id"}])
        [letter] = read_queue(rabbitmq_broker, names.dead, 1)
    body = json.loads(letter.body)
    assert body["kind"] == "malformed"
    assert "'id' is missing" in body["reason"]
    assert body["event"] == "user.updated"
    for manager in two_managers:
        assert manager.exists("u2")


def test_raw_json_from_a_kombu_producer_reaches_the_consumer_step(
    broker_url: str, names: Names, two_managers: Managers
) -> None:
    """On RabbitMQ and on Redis as the broker: a service that does not use Celery publishes JSON
    to the topic exchange with the event name as routing key."""
    app = make_app(broker_url, names)
    install(app, router=_user_router())
    _fill_users(two_managers)
    with embedded_worker(app):
        publish_event(
            broker_url,
            names.exchange,
            "user.updated",
            {"event": "user.updated", "data": {"id": 1}, "id": "evt-1"},
        )
        wait_for(lambda: _entries_gone(two_managers, "u1", "p1", "both"), what="the event")
        # explicit dependencies, and an event without a handler
        publish_event(
            broker_url,
            names.exchange,
            "user.renamed",
            {"event": "user.renamed", "data": {}, "dependencies": ["user:2"]},
        )
        wait_for(lambda: _entries_gone(two_managers, "u2"), what="the explicit dependencies")
    counts = depcache_celery.stats.snapshot()
    assert counts["events"] == 2
    assert counts["dependencies"] == 3


def test_raw_json_from_the_amqp_library(
    rabbitmq_broker: str, names: Names, two_managers: Managers
) -> None:
    app = make_app(rabbitmq_broker, names)
    install(app, router=_user_router())
    _fill_users(two_managers)
    with embedded_worker(app):
        body = json.dumps({"event": "user.updated", "data": {"id": 1}}).encode()
        url = urlsplit(rabbitmq_broker)
        with amqp.Connection(
            f"{url.hostname}:{url.port or 5672}",
            userid=unquote(url.username or "guest"),
            password=unquote(url.password or "guest"),
        ) as conn:
            channel = conn.channel()
            # amqp's own defaults (durable=False, auto_delete=True) would not match the worker's
            channel.exchange_declare(names.exchange, "topic", durable=True, auto_delete=False)
            channel.basic_publish(
                amqp.Message(body, content_type="application/json", delivery_mode=2),
                exchange=names.exchange,
                routing_key="user.updated",
            )
            channel.close()
        wait_for(lambda: _entries_gone(two_managers, "u1", "p1", "both"), what="the event")


def test_malformed_messages_are_dead_lettered_and_the_worker_goes_on(
    broker_url: str, names: Names, two_managers: Managers
) -> None:
    app = make_app(broker_url, names, depcache_max_message_bytes=1024)
    install(app, router=_user_router())
    _fill_users(two_managers)
    bad: list[tuple[bytes, str]] = [
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (json.dumps({"event": "user.updated", "data": [1]}).encode(), "'data' must be an object"),
        (json.dumps({"data": {}}).encode(), "missing field 'event'"),
        (
            json.dumps({"event": "user.updated", "data": {"id": 1, "pad": "x" * 2000}}).encode(),
            "too big",
        ),
        (json.dumps({"event": "user.updated", "data": {}}).encode(), "'id' is missing"),
    ]
    with embedded_worker(app):
        for body, _reason in bad:
            publish_event(broker_url, names.exchange, "user.updated", body)
        publish_event(
            broker_url, names.exchange, "user.updated", {"event": "user.updated", "data": {"id": 1}}
        )
        wait_for(lambda: _entries_gone(two_managers, "u1", "p1", "both"), what="the good event")
        letters = read_queue(broker_url, names.dead, len(bad))
    by_reason: dict[str, dict[str, Any]] = {}
    for message in letters:
        envelope = json.loads(message.body)
        assert message.headers[REASON_HEADER] == envelope["reason"]
        assert message.headers[KIND_HEADER] == "malformed"
        assert envelope["routing_key"] == "user.updated"
        assert envelope["exchange"] == names.exchange
        by_reason[envelope["reason"]] = envelope
    for body, reason in bad:
        [envelope] = [e for r, e in by_reason.items() if reason in r]
        if "body" in envelope:
            assert envelope["body"].encode() == body
        else:
            assert base64.b64decode(envelope["body_base64"]) == body
    counts = depcache_celery.stats.snapshot()
    assert counts["dead_letters"] == {"malformed": len(bad)}
    for manager in two_managers:
        assert manager.exists("u2")
