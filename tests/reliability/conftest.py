"""Fixtures of the reliability suite: the profile, per-test prefixes cleaned on every server."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.reliability.profile import PROFILE, Profile
from tests.support.servers import RedisServer


@pytest.fixture(scope="session")
def profile() -> Profile:
    """The run profile (``DEPCACHE_RELIABILITY_PROFILE``)."""
    return PROFILE


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key starting with ``prefix`` on the server at ``url``."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    except redis.RedisError:
        pass  # the server is gone (a restart test stopped it): nothing left to clean
    finally:
        client.close()


def delete_prefix_on_cluster(nodes: list[RedisServer], prefix: str) -> None:
    """Delete ``prefix``'s keys on every node (UNLINK one key at a time: slots differ)."""
    for node in nodes:
        client = redis.Redis(port=node.port, socket_connect_timeout=2, socket_timeout=10)
        with contextlib.suppress(redis.RedisError):
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                client.unlink(key)
        client.close()


@pytest.fixture
def rel_prefix(request: pytest.FixtureRequest, redis_url: str) -> Iterator[str]:
    """A fresh prefix whose keys are deleted afterwards on Redis and on the cluster (when the
    test used it)."""
    value = f"rel{uuid.uuid4().hex[:10]}"
    yield value
    delete_prefix(redis_url, value)
    if "cluster_nodes" in request.fixturenames:
        delete_prefix_on_cluster(request.getfixturevalue("cluster_nodes"), value)
