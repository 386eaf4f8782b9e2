"""The L1 listener against crafted announcements and dropped connections, on real Redis.

Anyone who can PUBLISH on the invalidation channel may send anything: an announcement the
listener cannot read (``"removed": 1e999``, ``NaN``, deep nesting, a non-object, a field of
the wrong type) flushes the L1, as a lost message would, but keeps the subscription: the L1
serves on and honours the next invalidation. After a drop the listener subscribes again after
0.1 s, doubling the wait only while Redis stays unreachable, and starting again from 0.1 s once
a subscription is confirmed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps
from depcache.announce import parse_announcement
from depcache.backends.pubsub import FIRST_RETRY_DELAY, MAX_RETRY_DELAY, PubSubListener
from tests.support.servers import RedisServer, redis_server

pytestmark = pytest.mark.redis

_VALID = {
    "id": "0" * 32,
    "manager": "m",
    "prefix": "p",
    "dependencies": ["unrelated"],
    "origin": "h:1:x",
    "ts": 1764072000.5,
    "removed": 0,
}


def _with(**fields: Any) -> bytes:
    return json.dumps({**_VALID, **fields}).encode()


def _raw(**fields: str) -> bytes:
    """A valid announcement with fields written as raw JSON text (``NaN`` and such)."""
    text = json.dumps(_VALID)
    for name, raw in fields.items():
        text = text.replace(f'"{name}": {json.dumps(_VALID[name])}', f'"{name}": {raw}')
        assert raw in text
    return text.encode()


CRAFTED = {
    "removed 1e999": _raw(removed="1e999"),
    "removed -1e999": _raw(removed="-1e999"),
    "removed NaN": _raw(removed="NaN"),
    "ts Infinity": _raw(ts="Infinity"),
    "ts -Infinity": _raw(ts="-Infinity"),
    "ts NaN": _raw(ts="NaN"),
    "ts 1e999": _raw(ts="1e999"),
    "ts huge int": _raw(ts="1" + "0" * 400),
    "removed 5000 digits": _raw(removed="7" * 5000),
    "nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "nested in a field": _raw(dependencies="[" * 50_000 + "]" * 50_000),
    "nested objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "array": b"[]",
    "string": b'"user:1"',
    "number": b"5",
    "null": b"null",
    "not JSON": b"\x1b[2J not json",
    "not UTF-8": b"\xff\xfe\x00",
    "id a number": _with(id=5),
    "manager null": _with(manager=None),
    "prefix a list": _with(prefix=["p"]),
    "origin an object": _with(origin={}),
    "removed a string": _with(removed="3"),
    "removed a boolean": _with(removed=True),
    "removed a float": _with(removed=3.0),
    "removed negative": _with(removed=-1),
    "ts a string": _with(ts="now"),
    "ts a boolean": _with(ts=False),
    "dependencies a string": _with(dependencies="user:1"),
    "dependencies holding a number": _with(dependencies=["user:1", 5]),
    "no dependencies": json.dumps({**_VALID, "dependencies": None}).encode(),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_parse_announcement_refuses_crafted_announcements_with_a_value_error(name: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        parse_announcement(CRAFTED[name])


def test_parse_announcement_reads_a_valid_announcement() -> None:
    message = parse_announcement(_with(removed=2, ts=1764072000))
    assert (message.dependencies, message.removed, message.ts) == (["unrelated"], 2, 1764072000.0)


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _listener(manager: depcache.CacheManager) -> PubSubListener:
    listener = manager._listener
    assert listener is not None
    return listener


def _drops(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The waits the listener announced, one per dropped subscription or failed attempt."""
    return [
        float(r.args[-1])  # type: ignore[index, arg-type]
        for r in caplog.records
        if r.name == "depcache" and "invalidation channel" in r.getMessage()
    ]


def test_crafted_announcements_flush_the_l1_but_keep_the_subscription(
    redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="depcache")
    config = RedisConfig(url=redis_url, prefix=prefix, l1_size=100, l1_max_age=60)
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    listener = _listener(manager)
    l1 = manager.l1
    assert l1 is not None
    assert listener.subscribed.wait(5)
    truth = {"row": "v1"}
    calls: list[str] = []

    @cache_with_deps(cache_manager=manager, ttl=600)
    def read() -> str:
        add_dependency("row")
        calls.append(truth["row"])
        return truth["row"]

    publisher = redis.Redis.from_url(redis_url)
    try:
        for name, message in CRAFTED.items():
            assert read() == "v1"
            assert len(l1) == 1, name  # served from the L1 from now on
            assert publisher.publish(manager.invalidation_channel, message) == 1
            _wait(lambda: len(l1) == 0, f"the L1 to be flushed by {name!r}")
            assert l1.active, name  # still serving: not a lost subscription
        assert listener.subscriptions == 1  # never dropped, never resubscribed
        assert _drops(caplog) == []

        # the L1 serves, and honours an invalidation made elsewhere (no announcement sent
        # from this process: another manager of the prefix, without L1)
        assert read() == "v1"
        assert read() == "v1"
        assert calls == ["v1"]  # the flushes cost Redis hits, never a computation
        truth["row"] = "v2"
        other = depcache.CacheManager(RedisConfig(url=redis_url, prefix=prefix), name="other")
        try:
            assert other.invalidate_dependency("row") == 1
        finally:
            other.close()
        _wait(lambda: read() == "v2", "the announcement to reach the L1")
    finally:
        publisher.close()
    unreadable = [r for r in caplog.records if "unreadable invalidation" in r.getMessage()]
    assert len(unreadable) == len(CRAFTED)


def _kill_subscribers(server: RedisServer) -> None:
    admin = redis.Redis.from_url(server.url)
    try:
        assert admin.client_kill_filter(_type="pubsub") >= 1
    finally:
        admin.close()


def test_the_reconnect_delay_resets_once_a_subscription_is_confirmed(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="depcache")
    with redis_server() as server:
        config = RedisConfig(url=server.url, prefix=prefix, l1_size=10, socket_timeout=1)
        manager = depcache.get_or_create_cache_manager(prefix, config=config)
        listener = _listener(manager)
        _wait(lambda: listener.subscriptions == 1, "the first subscription")

        # a working subscription dropped, again and again: the first wait each time
        for n in range(1, 5):
            _kill_subscribers(server)
            _wait(lambda: listener.subscriptions == n + 1, f"resubscription {n}")  # noqa: B023
        assert _drops(caplog) == [FIRST_RETRY_DELAY] * 4

        # Redis down: the wait doubles with each attempt that finds no server
        server.stop()
        _wait(lambda: len(_drops(caplog)) >= 4 + 5, "five failed attempts", timeout=30)
        down = _drops(caplog)[4:9]
        assert down == [FIRST_RETRY_DELAY * 2**k for k in range(5)], down
        assert max(_drops(caplog)) <= MAX_RETRY_DELAY

        # back: once subscribed again, a drop waits the first delay again
        server.start()
        _wait(lambda: listener.subscriptions == 6, "the subscription after the restart", 30)
        seen = len(_drops(caplog))
        _kill_subscribers(server)
        _wait(lambda: listener.subscriptions == 7, "the resubscription after the restart")
        assert _drops(caplog)[seen:] == [FIRST_RETRY_DELAY]
        manager.close()
