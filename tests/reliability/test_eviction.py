"""Eviction never serves a stale entry (issue 13, item 1).

A Redis with a small ``maxmemory`` and each eviction policy caches many more entries than fit
(``f(i)`` depends on ``row:i``; Redis evicts entries, indexes, markers, the epoch, the floor at
random or by age). Then for every ``i``: the row changes, ``invalidate_dependency("row:i")`` is
acknowledged, and ``f(i)`` is called: it must return the new row. An evicted index leaves an
entry its invalidation cannot find; the hit's check of the entry's marker (missing, or newer
than the entry) makes it a miss.

The negative control runs the same traffic with the hit check taken out (a lookup that serves
whatever entry it finds, as depcache 0.1 did): it finds stale reads, so the test can fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps
from depcache.backends import RedisCacheBackend
from depcache.backends.protocols import StandaloneProtocol
from depcache.backends.runners import Command
from tests.reliability.profile import PROFILE, write_report
from tests.servers import redis_server

pytestmark = [pytest.mark.redis, pytest.mark.timeout(PROFILE.timeout)]

POLICIES = ["allkeys-lru", "allkeys-random", "volatile-lru", "volatile-ttl"]
ROWS = 4_000 if PROFILE.name == "short" else 20_000
PAD = "x" * 1_500  # ~1.6 kB per entry: ROWS entries hold several times the 4 MB limit


class _Unchecked(StandaloneProtocol):
    """The lookup of depcache 0.1: the entry as found, the epoch on a miss (no check)."""

    def lookup_command(self, key: str) -> Command:
        return ("MGET", self.entry_prefix + key, self.epoch_keys[0])

    def lookup_reply(self, key: str, reply: Any) -> tuple[bytes | None, int | None]:
        value, epoch = reply
        return (value, None) if value is not None else (None, int(epoch or 0))


class _UncheckedBackend(RedisCacheBackend):
    def __init__(self, config: RedisConfig) -> None:
        super().__init__(config)
        protocol = _Unchecked(config)
        self.protocol = protocol
        self._lookup = protocol.lookup_command
        self._lookup_reply = protocol.lookup_reply


@pytest.fixture(params=POLICIES)
def policy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def small_server(policy: str) -> Iterator[Any]:
    with redis_server("--maxmemory", "4mb", "--maxmemory-policy", policy) as server:
        yield server


def _run(manager: depcache.CacheManager, url: str) -> dict[str, int]:
    """Cache every row, then change, invalidate and read each; count the stale reads."""
    truth = dict.fromkeys(range(ROWS), 0)

    @cache_with_deps(cache_manager=manager, ttl=600, silent_backend_errors=True)
    def f(i: int) -> dict[str, Any]:
        add_dependency(f"row:{i}")
        return {"row": i, "version": truth[i], "pad": PAD}

    for i in range(ROWS):
        assert f(i)["version"] == 0
    stale = failed = 0
    for i in range(ROWS):
        truth[i] += 1
        try:
            manager.invalidate_dependency(f"row:{i}")
        except depcache.BackendError:  # not acknowledged (out of memory): no claim to check
            failed += 1
            continue
        if f(i)["version"] != truth[i]:
            stale += 1
    stats = redis.Redis.from_url(url).info("stats")
    return {
        "rows": ROWS,
        "stale": stale,
        "unacknowledged": failed,
        "evicted": stats["evicted_keys"],
    }


def test_no_stale_entry_under_eviction(small_server: Any, policy: str, prefix: str) -> None:
    manager = depcache.get_or_create_cache_manager(
        prefix, config=RedisConfig(url=small_server.url, prefix=prefix)
    )
    figures = _run(manager, small_server.url)
    write_report(f"eviction_{policy}", figures, [f"{policy}: {figures}"])
    assert figures["evicted"] > ROWS // 2, figures  # the server really was evicting
    assert figures["unacknowledged"] < ROWS // 10, figures
    assert figures["stale"] == 0, figures


@pytest.mark.parametrize("policy", ["allkeys-random"])
def test_negative_control_without_the_hit_check_serves_stale_entries(
    small_server: Any, prefix: str
) -> None:
    config = RedisConfig(url=small_server.url, prefix=prefix)
    manager = depcache.get_or_create_cache_manager(
        prefix, config=config, backend=_UncheckedBackend(config)
    )
    figures = _run(manager, small_server.url)
    assert figures["evicted"] > ROWS // 2, figures
    assert figures["stale"] > 0, figures
