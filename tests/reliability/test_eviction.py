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
from depcache.backends.runners import Command, lua_source
from tests.reliability.profile import PROFILE, write_report
from tests.support.servers import redis_server

pytestmark = [pytest.mark.redis, pytest.mark.timeout(PROFILE.timeout)]

POLICIES = ["allkeys-lru", "allkeys-random", "volatile-lru", "volatile-ttl"]
ROWS = 4_000 if PROFILE.name == "short" else 20_000
PAD = "x" * 1_500  # ~1.6 kB per entry: ROWS entries hold several times the 4 MB limit


# lookup.lua with its check of the entry taken out: any entry found is served
_UNCHECKED_LOOKUP = lua_source("lookup").replace(
    "local function valid(v)\n", "local function valid(v)\n  do return type(v) == 'string' end\n", 1
)


class _Unchecked(StandaloneProtocol):
    """The lookup without the hit check (as depcache 0.1 served hits): the entry as found, the
    epoch on a miss, as the real script gives it."""

    def lookup_command(self, key: str) -> Command:
        return ("EVAL", _UNCHECKED_LOOKUP, 1, self.entry_prefix + key, self.prefix)


class _UncheckedBackend(RedisCacheBackend):
    def __init__(self, config: RedisConfig) -> None:
        super().__init__(config)
        self.protocol = _Unchecked(config)

    def lookup(self, key: str) -> tuple[bytes | None, int | None]:
        return self._lookup_slow(key)  # through the protocol, not the pre-packed script


@pytest.fixture(params=POLICIES)
def policy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def small_server(policy: str) -> Iterator[Any]:
    with redis_server("--maxmemory", "4mb", "--maxmemory-policy", policy) as server:
        yield server


def _run(manager: depcache.CacheManager, url: str, rows: int = ROWS) -> dict[str, int]:
    """Cache every row, then change, invalidate and read each; count the stale reads."""
    truth = dict.fromkeys(range(rows), 0)

    @cache_with_deps(cache_manager=manager, ttl=600, silent_backend_errors=True)
    def f(i: int) -> dict[str, Any]:
        add_dependency(f"row:{i}")
        return {"row": i, "version": truth[i], "pad": PAD}

    for i in range(rows):
        assert f(i)["version"] == 0
    stale = failed = 0
    for i in range(rows):
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
    figures = _run(manager, small_server.url, rows=4_000)  # the short profile's traffic
    assert figures["evicted"] > 4_000 // 2, figures
    # (with much more traffic the prefix's own keys, its epoch and floor, are evicted often
    # enough that the store refuses most results, which hides the lookup's fault)
    assert figures["stale"] > 0, figures
