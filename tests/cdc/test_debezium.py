"""Debezium change-event envelopes on the bus: parsed into the scheme's dependencies (with and
without the envelope's schema, every op), applied by a real worker, malformed ones
dead-lettered, tombstones acknowledged."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

import depcache
from depcache.db import any_row_dependency, column_dependency, table_dependency
from depcache_celery import BadMessage, install, parse_message
from depcache_celery.worker.debezium import TOMBSTONE_EVENT, parse_envelope
from tests.cdc.debezium_samples import payload, row, with_schema
from tests.support.celery_fixtures import (
    Names,
    embedded_worker,
    fill,
    make_app,
    publish_event,
    read_queue,
    wait_for,
)

TABLE = table_dependency("users")
ANY = any_row_dependency("users")
TOKEN = "6f9619ff-8b86-d011-b42d-00c04fc964ff"


def col(column: str, value: object, pg_type: str | None = None) -> str:
    dep = column_dependency("users", column, value, pg_type)
    assert dep is not None
    return dep


def deps_of(body: Any) -> set[str]:
    message = parse_message(json.dumps(body))
    assert message.dependencies is not None
    return set(message.dependencies)


ROW1 = {
    TABLE,
    col("id", 1),
    col("name", "Ada"),
    col("email", "ada@example.com"),
    col("score", "1.5", "numeric"),
    col("token", TOKEN, "uuid"),
}


# --- with the envelope's schema: precise ------------------------------------------------------


def test_insert_and_snapshot_read_with_schema() -> None:
    for op in ("c", "r"):
        message = parse_message(json.dumps(with_schema(payload(op, None, row(1)))))
        assert message.event == f"db.public.users.{'insert' if op == 'c' else 'read'}"
        assert message.data["source"] == "debezium"
        assert message.data["after"]["id"] == 1
        assert set(message.dependencies or ()) == ROW1


def test_update_with_full_before_is_precise() -> None:
    body = payload("u", row(1), row(1, email="ada@lovelace.org", score=Decimal("2")))
    assert deps_of(with_schema(body)) == ROW1 | {
        col("email", "ada@lovelace.org"),
        col("score", 2, "numeric"),
    }


def test_update_without_before_adds_any_row() -> None:
    assert deps_of(with_schema(payload("u", None, row(1)))) == ROW1 | {ANY}


def test_delete_with_key_only_before_adds_any_row() -> None:
    key_only = row(1, name=None, email=None, score=None, token=None)
    assert deps_of(with_schema(payload("d", key_only, None))) == {TABLE, col("id", 1), ANY}
    # a delete with a whole before image (REPLICA IDENTITY FULL, no nulls) is precise
    assert deps_of(with_schema(payload("d", row(1), None))) == ROW1
    assert deps_of(with_schema(payload("d", None, None))) == {TABLE, ANY}


def test_truncate_and_message() -> None:
    assert deps_of(with_schema(payload("t", None, None))) == {TABLE, ANY}
    message = parse_message(json.dumps(payload("m", None, None)))
    assert message.event == "db.message"
    assert message.dependencies == []


def test_propagated_source_types_are_used() -> None:
    body = with_schema(payload("c", None, row(1, name="0042")))
    columns = body["schema"]["fields"][1]["fields"]
    columns[1] = {**columns[1], "parameters": {"__debezium.source.column.type": "BPCHAR"}}
    columns[2] = {**columns[2], "parameters": {"__debezium.source.column.type": "VARCHAR"}}
    deps = deps_of(body)
    assert not any(":name=" in dep for dep in deps)  # char(n) never narrows
    assert col("email", "ada@example.com") in deps
    assert ANY not in deps


def test_unavailable_toasted_value_adds_any_row() -> None:
    body = payload("u", None, row(1, name="__debezium_unavailable_value"))
    deps = deps_of(with_schema(body))
    assert ANY in deps
    assert not any("__debezium" in dep for dep in deps)


# --- without a schema: every reading a narrowable column could give, any-row where unknowable ---


def test_without_schema_strings_get_every_reading_and_base64_is_imprecise() -> None:
    deps = deps_of(payload("c", None, row(1)))
    assert {TABLE, col("id", 1), col("name", "Ada"), col("email", "ada@example.com")} <= deps
    assert col("token", TOKEN, "uuid") in deps  # a uuid string, normalised
    # the score is base64 bytes whose scale only the schema gives: no exact reading exists
    assert ANY in deps
    assert col("score", "1.5", "numeric") not in deps


def test_without_schema_numbers_as_text_and_floats() -> None:
    after = {"id": 2, "price": "1.50", "ratio": 0.1, "flag": True, "tags": ["a"]}
    deps = deps_of(payload("c", None, after))
    assert col("price", "1.5", "numeric") in deps  # numeric sent as text
    assert col("price", "1.50", "text") in deps  # ... or a text column
    assert col("flag", True) in deps
    assert ANY in deps  # the float may be a rounded numeric
    precise = deps_of(payload("c", None, {"id": 2, "name": "Bob"}))
    assert precise == {TABLE, col("id", 2), col("name", "Bob")}


# --- tombstones and malformed envelopes ----------------------------------------------------------


def test_tombstones_are_events_without_dependencies() -> None:
    for body in ("null", json.dumps({"schema": None, "payload": None})):
        message = parse_message(body)
        assert message.event == TOMBSTONE_EVENT
        assert message.dependencies == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"schema": {}, "payload": []}, "'payload' must be an object"),
        ({"schema": [], "payload": payload("c", None, row(1))}, "'schema' must be an object"),
        ({**payload("c", None, row(1)), "op": "x"}, "'op' must be one of"),
        ({**payload("c", None, row(1)), "source": "pg"}, "'source' must be an object"),
        ({**payload("c", None, row(1)), "after": [1]}, "'after' must be an object or null"),
        (payload("c", None, None), "op 'c' needs 'after'"),
        (payload("c", None, row(1), table=""), "'source.table' must be non-empty"),
        (
            with_schema(payload("c", None, {**row(1), "score": "not base64!"})),
            "column 'score'",
        ),
        (with_schema(payload("c", None, {**row(1), "id": "1"})), "column 'id'"),
    ],
)
def test_malformed_envelopes_are_bad_messages(body: Any, reason: str) -> None:
    with pytest.raises(BadMessage, match="Debezium envelope") as caught:
        parse_message(json.dumps(body))
    assert reason in caught.value.reason


def test_ordinary_events_are_not_mistaken_for_envelopes() -> None:
    body = {"event": "user.updated", "data": {"op": "c", "source": {}}}
    assert parse_message(json.dumps(body)).event == "user.updated"
    with pytest.raises(BadMessage, match="missing field 'event'"):
        parse_message(json.dumps({"data": {}}))
    assert parse_envelope(payload("c", None, row(1)), prefix="pg").event == "pg.public.users.insert"


# --- through a real worker -----------------------------------------------------------------------

Managers = tuple[depcache.CacheManager, depcache.CacheManager]


@pytest.mark.redis
def test_envelopes_through_the_worker(
    rabbitmq_broker: str, names: Names, two_managers: Managers
) -> None:
    """Every op, with and without the schema wrapper, published as Debezium would to the
    exchange: the worker invalidates what the scheme names, dead-letters a malformed envelope
    with its reason, acknowledges tombstones."""
    app = make_app(rabbitmq_broker, names)
    install(app)
    entries = {
        "user1": {col("id", 1), ANY},
        "user2": {col("id", 2), ANY},
        "by_email": {col("email", "ada@lovelace.org"), ANY},
        "all": {TABLE},
        "key1": {col("id", 1)},
        "key2": {col("id", 2)},
        "sentinel": {"sentinel"},
    }

    def publish(body: Any) -> None:
        raw = json.dumps(body).encode()
        publish_event(rabbitmq_broker, names.exchange, "shop.public.users", raw)

    def settle() -> dict[str, bool]:
        """Publish a sentinel event after the others and wait for it: what it leaves is final."""
        publish_event(
            rabbitmq_broker,
            names.exchange,
            "sentinel",
            {"event": "sentinel", "data": {}, "dependencies": ["sentinel"]},
        )
        wait_for(lambda: not any(m.exists("sentinel") for m in two_managers), what="sentinel")
        return {k: all(m.exists(k) for m in two_managers) for k in entries}

    with embedded_worker(app):
        for manager in two_managers:
            fill(manager, entries)
        publish(with_schema(payload("u", row(1), row(1, email="ada@lovelace.org"))))
        assert settle() == {
            "user1": False,
            "user2": True,  # precise: a write to user 1 leaves user 2 cached
            "by_email": False,
            "all": False,
            "key1": False,
            "key2": True,
            "sentinel": False,
        }

        for manager in two_managers:
            fill(manager, entries)
        publish(None)  # a tombstone: acknowledged, nothing invalidated
        publish(with_schema(payload("c", None, row(2))))
        assert settle() == {
            "user1": True,
            "user2": False,
            "by_email": True,
            "all": False,
            "key1": True,
            "key2": False,
            "sentinel": False,
        }

        for manager in two_managers:
            fill(manager, entries)
        publish(payload("d", row(1, name=None, email=None, score=None, token=None), None))
        state = settle()
        assert state["key2"]  # the hand-written key of another row
        assert not any(state[k] for k in ("user1", "user2", "by_email", "all", "key1"))

        for manager in two_managers:
            fill(manager, entries)
        publish(payload("t", None, None))
        state = settle()
        assert not any(state[k] for k in ("user1", "user2", "by_email", "all"))
        assert state["key1"]
        assert state["key2"]

        publish({**payload("c", None, row(3)), "op": "z"})
        (letter,) = read_queue(rabbitmq_broker, names.dead, 1)
        dead = json.loads(letter.body)
        assert dead["kind"] == "malformed"
        assert dead["reason"].startswith("Debezium envelope: 'op' must be one of")
