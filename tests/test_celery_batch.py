"""One batch of real bus messages (taken from RabbitMQ): one invalidation for all of them, with
de-duplicated dependencies; acknowledgements only once the batch is applied or handed off."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue
from kombu.message import Message

from depcache_celery import BatchProcessor, FanoutReport, Router
from tests.celery_fixtures import Names, publish_event

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
    queue.channel.close()
    with Connection(rabbitmq_broker) as conn:
        again = queue(conn.default_channel)
        redelivered = _take(again, 3)
        assert all(m.delivery_info["redelivered"] for m in redelivered)
        assert sorted(json.loads(m.body)["event"] for m in redelivered) == [
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
