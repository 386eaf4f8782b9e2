"""Every invalidation is announced on the manager's pub/sub channel, with the documented schema."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import depcache
from depcache import ConfigBase, RedisConfig, add_dependency, cache_with_deps
from depcache.announce import parse_announcement, process_origin
from depcache.backends.memory import MemoryStore
from tests.support.servers import RedisServer

FIELDS = {"id", "manager", "prefix", "dependencies", "removed", "origin", "ts"}


def _fill(manager: depcache.CacheManager) -> None:
    @cache_with_deps(cache_manager=manager)
    def item(i: int) -> int:
        add_dependency("shared")
        return i

    for i in range(3):
        item(i)


def _collect_redis(client: Any, channel: str) -> Callable[[], list[dict[str, Any]]]:
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # wait for the subscription to be confirmed
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "subscribe":
            break

    def messages(expected: int = 1) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        end = time.monotonic() + 5
        while len(found) < expected and time.monotonic() < end:
            message = pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                found.append(json.loads(message["data"]))
        return found

    return messages


def _check(message: dict[str, Any], manager: depcache.CacheManager, deps: list[str]) -> None:
    assert set(message) == FIELDS
    assert message["manager"] == manager.name
    assert message["prefix"] == manager.prefix
    assert message["dependencies"] == deps
    assert message["origin"] == process_origin()
    assert abs(message["ts"] - time.time()) < 60
    assert len(message["id"]) == 32
    parsed = parse_announcement(json.dumps(message))
    assert parsed.removed == message["removed"]


@pytest.mark.redis
@pytest.mark.parametrize("how", ["sync", "async", "invalidate", "ainvalidate"])
def test_standalone_invalidations_are_announced(redis_url: str, prefix: str, how: str) -> None:
    manager = depcache.get_or_create_cache_manager(
        prefix, config=RedisConfig(url=redis_url, prefix=prefix)
    )
    assert manager.invalidation_channel == f"{prefix}:invalidations"
    listener = redis.Redis.from_url(redis_url)  # kept alive: collecting it closes its pool
    messages = _collect_redis(listener, manager.invalidation_channel)
    _fill(manager)
    if how == "sync":
        manager.invalidate_dependency("shared")
    elif how == "async":
        asyncio.run(manager.ainvalidate_dependency("shared"))
    elif how == "invalidate":
        depcache.invalidate("shared")
    else:
        asyncio.run(depcache.ainvalidate("shared"))
    (message,) = messages()
    _check(message, manager, ["shared"])
    assert message["removed"] == 3


@pytest.mark.redis
def test_cluster_invalidations_are_announced(
    cluster_url: str, cluster_nodes: list[RedisServer], prefix: str
) -> None:
    manager = depcache.get_or_create_cache_manager(
        prefix, config=RedisConfig(url=cluster_url, prefix=prefix, cluster=True)
    )
    # classic pub/sub on a cluster: a subscriber on any node hears it
    listener = redis.Redis(port=cluster_nodes[-1].port)
    messages = _collect_redis(listener, manager.invalidation_channel)
    _fill(manager)
    manager.invalidate_dependencies("shared", "unused")
    (message,) = messages()
    _check(message, manager, ["shared", "unused"])
    assert message["removed"] == 3


def test_memory_invalidations_are_announced_in_process(prefix: str) -> None:
    manager = depcache.get_or_create_cache_manager(
        prefix, config=ConfigBase(prefix=prefix, backend="memory")
    )
    received: list[str] = []
    MemoryStore.for_prefix(manager.config).subscribe(manager.invalidation_channel, received.append)
    _fill(manager)
    manager.invalidate_dependency("shared")
    asyncio.run(manager.ainvalidate_dependency("nothing-depends-on-this"))
    first, second = (json.loads(m) for m in received)
    _check(first, manager, ["shared"])
    assert first["removed"] == 3
    assert second["removed"] == 0
    assert first["id"] != second["id"]


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b'{"id": "x"}', b'{"dependencies": "user:1"}'],
)
def test_parse_message_rejects_malformed_announcements(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        parse_announcement(data)
