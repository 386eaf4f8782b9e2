"""Writes lost by a master are noticed, and the entries they would have voided are not served.

A server with RDB persistence caches ``f(1)`` and snapshots it (``SAVE``); then the row changes
and ``row:1`` is invalidated (acknowledged: the entry is deleted, the marker raised). The
server is SIGKILLed and restarted: it loads the snapshot, so the old entry and the old marker
are back, and no hit can tell. Each process's deployment watch sees the master's new run id
(not durable: only AOF with ``appendfsync always`` would be) and raises the prefix's floor:
once that poll has run, the old entry is void.

The negative control turns the watch off (``node_check_seconds=0``): the restored entry is then
served, stale, which is what the watch is for.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps
from tests.reliability.profile import PROFILE
from tests.support.servers import RedisServer, redis_server

pytestmark = [pytest.mark.redis, pytest.mark.timeout(PROFILE.timeout)]


@pytest.fixture
def snapshotting() -> Iterator[RedisServer]:
    """A server that loads its RDB snapshot when it starts (and saves only when told)."""
    with redis_server("--save", "", "--dbfilename", "dump.rdb") as server:
        yield server


def _restore_old_snapshot(server: RedisServer, watched: bool) -> tuple[int, int]:
    """Cache, snapshot, change and invalidate, restart from the snapshot; return what the
    cached function returns right after the restart is noticed, and the truth."""
    prefix = f"lw{uuid.uuid4().hex[:8]}"
    config = RedisConfig(
        url=server.url, prefix=prefix, socket_timeout=2.0, node_check_seconds=1.0 if watched else 0
    )
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    truth = {"row": 1}

    @cache_with_deps(cache_manager=manager, ttl=600, silent_backend_errors=True)
    def f() -> int:
        add_dependency("row:1")
        return truth["row"]

    assert f() == 1
    assert f() == 1  # a hit
    watch = manager.backend.watch  # type: ignore[attr-defined]
    if watched:
        assert watch is not None
        assert watch.wait_next_poll(10)  # the record of the master's identity is written
    else:
        assert watch is None
    client = redis.Redis.from_url(server.url)
    client.save()  # the snapshot holds the entry and the marker as they are now
    truth["row"] = 2
    assert manager.invalidate_dependency("row:1") == 1  # acknowledged, then lost below
    assert f() == 2
    server.executor.kill()
    server.start()  # loads the snapshot: the old entry and the old marker come back
    client = redis.Redis.from_url(server.url)
    assert client.dbsize() > 0, "the snapshot was not loaded"
    if watched:
        assert watch.wait_next_poll(10)
    served = f()
    manager.close()
    return served, truth["row"]


def test_a_master_that_lost_writes_voids_what_it_cached_before(
    snapshotting: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    served, truth = _restore_old_snapshot(snapshotting, watched=True)
    assert served == truth
    assert any("lost data or changed" in r.getMessage() for r in caplog.records)


def test_negative_control_without_the_watch_the_old_entry_is_served(
    snapshotting: RedisServer,
) -> None:
    served, truth = _restore_old_snapshot(snapshotting, watched=False)
    assert served != truth  # stale: nothing told the cache that the invalidation was lost
