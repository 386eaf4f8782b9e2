"""Shared fixtures: a Redis URL, a unique key prefix per test, and managers over every backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

import depcache
import depcache.testing
from tests.support.helpers import release_connections

# Session fixtures that start extra Redis deployments (two standalone servers, a cluster),
# brokers and workers, and a PostgreSQL with wal_level=logical for change data capture.
pytest_plugins = [
    "tests.support.server_fixtures",
    "tests.support.celery_fixtures",
    "tests.support.cdc_fixtures",
]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_url_from_env() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of a reachable Redis server; skips locally, fails in CI, when there is none."""
    url = _redis_url_from_env()
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"Redis at {_without_password(url)} is not reachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    finally:
        client.close()
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A raw redis-py client for inspecting and tampering with what the library stored."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _delete_prefixed_keys(prefix: str) -> None:
    client = redis.Redis.from_url(_redis_url_from_env(), socket_connect_timeout=1, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    except redis.RedisError:
        pass  # no Redis: the test used memory backends only
    finally:
        client.close()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A prefix no other test uses; its Redis keys (``<prefix>*``) are deleted afterwards."""
    value = f"t{uuid.uuid4().hex[:10]}"
    yield value
    _delete_prefixed_keys(value)


@pytest.fixture(autouse=True)
async def _reset_managers() -> AsyncIterator[None]:
    """Close every registered manager's connections (in the test's event loop), then forget them.

    Async so that asyncio Redis connections close in the loop that opened them, before
    pytest-asyncio closes it (otherwise they warn, and warnings are errors here).
    """
    yield
    for manager in depcache.registered_managers().values():
        await release_connections(manager)
    depcache.testing.reset_managers()


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
        pytest.param("cluster", id="cluster", marks=pytest.mark.redis),
    ]
)
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Which storage the managers of a test use: the in-memory Fake backends, Redis, or a
    Redis Cluster started for the session (see server_fixtures.py)."""
    return str(request.param)


MakeManager = Callable[..., depcache.CacheManager]


@pytest.fixture
def make_manager(request: pytest.FixtureRequest, backend_kind: str, prefix: str) -> MakeManager:
    """Build registered managers of the test's backend kind.

    ``make_manager()`` is named and prefixed after the test's prefix; ``make_manager("b")`` adds a
    suffix for a second, independent manager. Extra keyword arguments go to the config.
    """

    def make(suffix: str = "", **config_kwargs: Any) -> depcache.CacheManager:
        name = f"{prefix}{suffix}"
        if backend_kind == "memory":
            config = depcache.ConfigBase(prefix=name, **config_kwargs)
            return depcache.get_or_create_cache_manager(
                name=name,
                config=config,
                backend=depcache.FakeCacheBackend(config),
                async_backend=depcache.FakeAsyncCacheBackend(config),
            )
        if backend_kind == "cluster":
            url = request.getfixturevalue("cluster_url")
            config_kwargs.setdefault("cluster", True)
        else:
            url = request.getfixturevalue("redis_url")
        return depcache.get_or_create_cache_manager(
            name=name, config=depcache.RedisConfig(url=url, prefix=name, **config_kwargs)
        )

    return make


@pytest.fixture
def manager(make_manager: MakeManager) -> depcache.CacheManager:
    """A registered manager named after the test's prefix, on memory or on Redis."""
    return make_manager()


@pytest.fixture
def redis_manager(redis_url: str, prefix: str) -> depcache.CacheManager:
    """A registered manager on Redis only (for tests that inspect or tamper with Redis)."""
    return depcache.get_or_create_cache_manager(
        name=prefix, config=depcache.RedisConfig(url=redis_url, prefix=prefix)
    )


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Whether the test decorates sync functions (and uses sync manager methods) or async ones."""
    return str(request.param)
