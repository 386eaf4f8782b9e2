"""Session fixtures that start extra Redis deployments: two standalone servers and a cluster.

Registered from conftest.py. A missing redis-server/redis-cli fails the run in CI and skips
locally.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.support.servers import RedisServer, redis_cluster, redis_server


def _require_binaries() -> None:
    missing = [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]
    if missing:
        message = f"{', '.join(missing)} not installed: cannot start extra Redis servers"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def cluster_nodes() -> Iterator[list[RedisServer]]:
    """A 3-master Redis Cluster started for this test session."""
    _require_binaries()
    with redis_cluster(3) as nodes:
        yield nodes


@pytest.fixture(scope="session")
def cluster_url(cluster_nodes: list[RedisServer]) -> str:
    """The URL of one node of the session's cluster (clients discover the others)."""
    return cluster_nodes[0].url


@pytest.fixture(scope="session")
def standalone_servers() -> Iterator[list[RedisServer]]:
    """Two extra standalone Redis servers started for this test session."""
    _require_binaries()
    with redis_server() as first, redis_server() as second:
        yield [first, second]
