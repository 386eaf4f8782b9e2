"""Numbers that are not JSON on the bus: ``NaN``, ``Infinity``, ``-Infinity`` and numbers that
overflow a float (``1e999``), anywhere in a message, are dead-lettered as malformed with the
reason, as ``emit()`` refuses to send them; they never become ``user:nan``."""

from __future__ import annotations

import json
import math

import pytest

import depcache_celery
from depcache_celery import BadMessage, Router, emit, install, parse_message
from depcache_celery.worker.deadletter import KIND_HEADER, REASON_HEADER
from tests.support.celery_fixtures import (
    Managers,
    Names,
    embedded_worker,
    fill,
    make_app,
    publish_event,
    read_queue,
    wait_for,
)

pytestmark = pytest.mark.redis

#: (body, what the dead letter's reason names)
NOT_JSON_NUMBERS = [
    ('{"event": "user.updated", "data": {"id": NaN}}', "NaN is not a number JSON allows"),
    ('{"event": "user.updated", "data": {"id": Infinity}}', "Infinity is not a number"),
    ('{"event": "user.updated", "data": {"id": -Infinity}}', "-Infinity is not a number"),
    ('{"event": "user.updated", "data": {"id": 1e999}}', "1e999 is beyond a float's range"),
    ('{"event": "user.updated", "data": {"id": -1E+999}}', "-1E+999 is beyond a float's range"),
    ('{"event": "user.updated", "data": {"id": 1, "x": [{"y": NaN}]}}', "NaN is not a number"),
    ('{"event": "user.updated", "data": {"id": 1}, "extra": Infinity}', "Infinity is not"),
    ('{"event": "user.updated", "data": {"id": 1.8e308}}', "1.8e308 is beyond a float's range"),
]


@pytest.mark.parametrize(("body", "reason"), NOT_JSON_NUMBERS)
def test_parse_message_refuses_numbers_json_does_not_have(body: str, reason: str) -> None:
    with pytest.raises(BadMessage) as caught:
        parse_message(body)
    assert caught.value.reason.startswith("not JSON: ")
    assert reason in caught.value.reason
    with pytest.raises(BadMessage):
        parse_message(body.encode())


def test_finite_numbers_and_huge_integers_within_limits_still_parse() -> None:
    message = parse_message(
        '{"event": "e", "data": {"a": 1e308, "b": -2.5e-300, "c": 1e-999, "d": ' + "9" * 400 + "}}"
    )
    assert message.data["a"] == 1e308
    assert message.data["c"] == 0.0
    assert message.data["d"] == int("9" * 400)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_emit_refuses_the_same_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        emit("user.updated", {"id": value}, broker_url="memory://")


def _router() -> Router:
    router = Router()
    router.on_event("user.updated", deps=["user:{id}"])
    return router


def test_not_json_numbers_on_the_bus_are_dead_lettered_and_invalidate_nothing(
    broker_url: str, names: Names, two_managers: Managers
) -> None:
    app = make_app(broker_url, names)
    install(app, router=_router())
    # what the numbers would have become as dependencies
    entries = {"nan": {"user:nan"}, "inf": {"user:inf"}, "-inf": {"user:-inf"}, "u1": {"user:1"}}
    for manager in two_managers:
        fill(manager, entries)
    with embedded_worker(app):
        for body, _ in NOT_JSON_NUMBERS:
            publish_event(broker_url, names.exchange, "user.updated", body.encode())
        publish_event(
            broker_url, names.exchange, "user.updated", {"event": "user.updated", "data": {"id": 1}}
        )
        wait_for(lambda: not any(m.exists("u1") for m in two_managers), what="the good event after")
        letters = read_queue(broker_url, names.dead, len(NOT_JSON_NUMBERS))
    reasons = []
    for letter in letters:
        envelope = json.loads(letter.body)
        assert letter.headers[KIND_HEADER] == "malformed"
        assert letter.headers[REASON_HEADER] == envelope["reason"]
        reasons.append(envelope["reason"])
        assert envelope["body"] in {body for body, _ in NOT_JSON_NUMBERS}  # kept as sent
    for body, reason in NOT_JSON_NUMBERS:
        assert any(reason in r for r in reasons), (body, reasons)
    for manager in two_managers:
        for key in ("nan", "inf", "-inf"):
            assert manager.exists(key), (manager.name, key)
    counts = depcache_celery.stats.snapshot()
    assert counts["dead_letters"] == {"malformed": len(NOT_JSON_NUMBERS)}
    assert counts["events"] == 1
