"""One batch of real bus messages (taken from RabbitMQ): one invalidation for all of them, with
de-duplicated dependencies; acknowledgements only once the batch is applied or handed off."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer, Queue
from kombu.message import Message

import depcache
import depcache_celery
from depcache_celery import BatchProcessor, FanoutReport, Router, Settings, event_queue, install
from depcache_celery.worker.consumer import ack_batch
from depcache_celery.worker.ledger import Ledger
from tests.support.celery_fixtures import (
    Names,
    _cleanup,
    embedded_worker,
    make_app,
    publish_event,
    wait_for,
)

pytestmark = pytest.mark.redis


@pytest.fixture
def queue(rabbitmq_broker: str, names: Names) -> Iterator[Queue]:
    """The test's durable queue, bound to its topic exchange, on a live channel."""
    exchange = Exchange(names.exchange, type="topic", durable=True, auto_delete=False)
    with Connection(rabbitmq_broker) as conn:
        bound = Queue(names.queue, exchange=exchange, routing_key="#", durable=True)(
            conn.default_channel
        )
        bound.declare()
        yield bound


def _take(queue: Queue, count: int) -> list[Message]:
    messages: list[Message] = []
    for _ in range(200):
        message = queue.get(no_ack=False)
        if message is not None:
            messages.append(message)
            if len(messages) == count:
                return messages
        else:
            time.sleep(0.02)
    pytest.fail(f"got {len(messages)} of {count} messages")


class Recorder:
    def __init__(self, errors: dict[str, Exception] | None = None) -> None:
        self.applied: list[list[str]] = []
        self.dead: list[dict[str, Any]] = []
        self.handed_off: list[tuple[list[str], list[str]]] = []
        self.errors = errors or {}
        self.hand_off_fails = False

    def apply(self, deps: Iterable[str]) -> FanoutReport:
        deps = list(deps)
        self.applied.append(deps)
        return FanoutReport(deps, removed={"ok": 1}, errors=dict(self.errors))

    def dead_letter(self, letter: dict[str, Any]) -> None:
        self.dead.append(letter)

    def hand_off(self, deps: list[str], managers: list[str]) -> None:
        if self.hand_off_fails:
            raise ConnectionError("broker gone")
        self.handed_off.append((deps, managers))

    def processor(self, router: Router) -> BatchProcessor:
        return BatchProcessor(
            router=router,
            dead_letter=self.dead_letter,
            hand_off=self.hand_off,
            max_message_bytes=4096,
            apply=self.apply,
        )


def _router() -> Router:
    router = Router()
    router.on_event("user.updated", deps=["user:{id}", "users:list"])
    return router


def _publish_batch(broker: str, names: Names) -> None:
    for body in (
        {"event": "user.updated", "data": {"id": 1}},
        {"event": "user.updated", "data": {"id": 2}, "dependencies": ["user:1"]},
        {"event": "nobody.listens", "data": {}},
    ):
        publish_event(broker, names.exchange, str(body["event"]), body)
    publish_event(broker, names.exchange, "user.updated", b"{oops")


def test_a_batch_is_one_invalidation_of_deduplicated_dependencies(
    rabbitmq_broker: str, names: Names, queue: Queue
) -> None:
    _publish_batch(rabbitmq_broker, names)
    recorder = Recorder()
    outcome = recorder.processor(_router()).process(_take(queue, 4))
    assert recorder.applied == [["user:1", "users:list", "user:2"]]
    assert (outcome.acked, outcome.dead_lettered, outcome.unacked) == (4, 1, 0)
    [letter] = recorder.dead
    assert letter["body"] == "{oops"
    assert letter["reason"].startswith("not JSON")
    assert queue.get(no_ack=True) is None  # all acknowledged


def test_failed_managers_share_is_handed_off_then_acknowledged(
    rabbitmq_broker: str, names: Names, queue: Queue
) -> None:
    _publish_batch(rabbitmq_broker, names)
    recorder = Recorder(errors={"down": ConnectionError("refused")})
    outcome = recorder.processor(_router()).process(_take(queue, 4))
    assert recorder.handed_off == [(["user:1", "users:list", "user:2"], ["down"])]
    assert outcome.handed_off == ["down"]
    assert outcome.acked == 4


def test_batch_stays_unacknowledged_when_the_hand_off_fails(
    rabbitmq_broker: str, names: Names, queue: Queue
) -> None:
    _publish_batch(rabbitmq_broker, names)
    recorder = Recorder(errors={"down": ConnectionError("refused")})
    recorder.hand_off_fails = True
    outcome = recorder.processor(_router()).process(_take(queue, 4))
    assert (outcome.acked, outcome.dead_lettered, outcome.unacked) == (1, 1, 3)
    # the channel closes: the broker delivers the three valid messages again
    channel: Any = queue.channel
    channel.close()
    with Connection(rabbitmq_broker) as conn:
        again = queue(conn.default_channel)
        redelivered = _take(again, 3)
        assert all(m.delivery_info["redelivered"] for m in redelivered)
        assert sorted(json.loads(str(m.body))["event"] for m in redelivered) == [
            "nobody.listens",
            "user.updated",
            "user.updated",
        ]
        for m in redelivered:
            m.ack()


def test_a_bug_in_routing_dead_letters_instead_of_raising(
    rabbitmq_broker: str, names: Names, queue: Queue
) -> None:
    publish_event(rabbitmq_broker, names.exchange, "user.updated", {"event": "e", "data": {}})
    recorder = Recorder()

    def broken_router() -> Router:
        raise RuntimeError("bug")

    processor = BatchProcessor(
        router=broken_router,
        dead_letter=recorder.dead_letter,
        hand_off=recorder.hand_off,
        max_message_bytes=4096,
        apply=recorder.apply,
    )
    outcome = processor.process(_take(queue, 1))
    assert outcome.dead_lettered == 1
    assert "internal error" in recorder.dead[0]["reason"]


# --- batches on a real worker ---------------------------------------------------------------------

BURST = 300


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_burst_is_applied_in_batches_without_a_batch_window(
    request: pytest.FixtureRequest, broker: str, names: Names, redis_url: str, prefix: str
) -> None:
    """A burst waiting in the queue is applied in batches of many messages with the default
    settings: on RabbitMQ, which delivers many messages at once, and on Redis, whose transport
    delivers one message per event-loop turn, thanks to its default batch window."""
    broker_url = str(
        request.getfixturevalue(f"{broker}_broker_url" if broker == "redis" else "rabbitmq_url")
    )
    try:
        managers = [
            depcache.get_or_create_cache_manager(
                name=f"{prefix}{suffix}",
                config=depcache.RedisConfig(url=redis_url, prefix=f"{prefix}{suffix}"),
            )
            for suffix in ("a", "b")
        ]
        for manager in managers:
            for n in range(BURST):
                manager.set(f"k{n}", n, dependencies={f"item:{n}"})
            manager.set("other", 0, dependencies={"item:other"})
        app = make_app(broker_url, names)
        assert Settings.from_conf(app.conf).batch_window is None  # the transport's default
        router = Router()
        router.on_event("item.changed", deps=["item:{n}"])
        install(app, router=router)
        # the burst waits in the worker's queue before the worker starts
        exchange = Exchange(names.exchange, type="topic", durable=True, auto_delete=False)
        with Connection(broker_url) as conn:
            event_queue(Settings.from_conf(app.conf))(conn.default_channel).declare()
            producer = Producer(conn.default_channel)
            for n in range(BURST):
                producer.publish(
                    json.dumps({"event": "item.changed", "data": {"n": n}}).encode(),
                    exchange=exchange,
                    routing_key="item.changed",
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                    declare=[exchange],
                )
        with embedded_worker(app):
            wait_for(
                lambda: not any(m.exists(f"k{n}") for m in managers for n in range(BURST)),
                timeout=60,
                what="the burst",
            )
        counts = depcache_celery.stats.snapshot()
        assert counts["events"] == BURST
        assert counts["dependencies"] == BURST
        batches = counts["batches"]
        assert isinstance(batches, int)
        assert batches < BURST / 2
        assert all(m.exists("other") for m in managers)
    finally:
        _cleanup(broker_url, names)


def _ledger_for_acks() -> Ledger[Message]:
    """The consumer's bookkeeping as the consumer step keeps it on AMQP (multiple acks)."""
    return Ledger(multi_ack=True)


def test_a_batch_is_acknowledged_at_once_only_when_everything_before_it_is_settled(
    rabbitmq_broker: str, names: Names
) -> None:
    """AMQP: one basic.ack(multiple=True) per batch, never covering a message still pending
    (an earlier batch in flight, or one left unacknowledged): those are acked one by one."""
    queue = Queue(names.queue, durable=True, auto_delete=False)
    with Connection(rabbitmq_broker) as conn:
        channel = conn.default_channel
        queue(channel).declare()
        producer = Producer(channel)
        for n in range(7):
            producer.publish({"n": n}, exchange="", routing_key=names.queue, serializer="json")
    with Connection(rabbitmq_broker) as conn:
        channel = conn.channel()
        bound = queue(channel)
        got = [bound.get(no_ack=False) for _ in range(7)]
        assert all(m is not None for m in got)
        m = [message for message in got if message is not None]
        calls: list[tuple[Any, ...]] = []
        real_ack = channel.basic_ack

        def spy(*args: Any, **kwargs: Any) -> Any:
            calls.append((*args, kwargs.get("multiple", False)))
            return real_ack(*args, **kwargs)

        channel.basic_ack = spy  # type: ignore[method-assign]
        ledger = _ledger_for_acks()
        for message in m:  # as the consumer step tracks each delivery
            ledger.track(message)
        # m[0] is still pending (say, its batch is in flight): no multiple ack may cover it
        assert ack_batch(ledger, [m[1], m[2]]) == 2
        assert [c[-1] for c in calls] == [False, False]
        # m[0] settles: with m[1] and m[2] done, the next batch goes in one ack up to m[4]
        assert ack_batch(ledger, [m[0], m[3], m[4]]) == 3
        assert calls[-1] == (int(m[4].delivery_tag), True)
        assert len(calls) == 3
        assert all(message.acknowledged for message in m[:5])
        assert ledger.pending == [int(m[5].delivery_tag), int(m[6].delivery_tag)]
        channel.close()  # m[5] and m[6] were never acknowledged: back to the queue
    with Connection(rabbitmq_broker) as conn:
        left = queue(conn.default_channel).queue_declare(passive=True)
        assert left.message_count == 2


def test_settled_messages_are_not_tracked_forever(rabbitmq_broker: str, names: Names) -> None:
    """Batches of one are acknowledged one by one: the settled messages must still leave the
    map the multiple-ack rule reads, or it would grow with every event."""
    queue = Queue(names.queue, durable=True, auto_delete=False)
    with Connection(rabbitmq_broker) as conn:
        queue(conn.default_channel).declare()
        producer = Producer(conn.default_channel)
        for n in range(50):
            producer.publish({"n": n}, exchange="", routing_key=names.queue, serializer="json")
    with Connection(rabbitmq_broker) as conn:
        bound = queue(conn.channel())
        ledger = _ledger_for_acks()
        for _ in range(50):
            message = bound.get(no_ack=False)
            assert message is not None
            ledger.track(message)
            message.ack()  # a batch of one
        assert len(ledger.pending) <= 1
