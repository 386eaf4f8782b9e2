"""A Redis Cluster master restarted empty under traffic voids what it held (issue 13, item 2).

A dedicated 3-master cluster without persistence caches ``f(i)`` (dependency ``row:i``) for
200 rows spread over every master. Reader threads keep calling the cached functions (silent
about backend errors) while one master is SIGKILLed and started again with the same
``nodes.conf``: it rejoins with its slots and none of its data. The master is, in turn, the one
holding the epoch (and floor), the one holding the most dependency indexes of entries that live
elsewhere, and the one holding the most entries.

Then, at once (not waiting for the node watch), every row changes and is invalidated
(acknowledged), and every cached call must return the new row. Before issue 13, the entries
whose index lived on the restarted master could no longer be invalidated and stayed stale; now
their marker is gone with the index, and a hit with a missing marker is a miss.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps
from tests.reliability.profile import PROFILE, write_report
from tests.support.server_fixtures import _require_binaries
from tests.support.servers import RedisServer, _wait_cluster_ok, redis_cluster

pytestmark = [pytest.mark.redis, pytest.mark.timeout(PROFILE.timeout)]

ROWS = 200


@pytest.fixture
def cluster() -> Iterator[list[RedisServer]]:
    """A throw-away cluster of 3 masters (one will be killed)."""
    _require_binaries()
    with redis_cluster(3) as nodes:
        yield nodes


def _owner(nodes: list[RedisServer], key: str) -> int:
    """The port of the master serving ``key``'s slot."""
    client = redis.Redis(port=nodes[0].port)
    try:
        ranges = client.execute_command("CLUSTER", "SLOTS")
    finally:
        client.close()
    slot = key_slot(key.encode())
    for start, end, master, *_replicas in ranges:
        if int(start) <= slot <= int(end):
            return int(master[1])
    raise AssertionError(f"no master serves slot {slot}")


def _victim(nodes: list[RedisServer], prefix: str, role: str, keys: dict[int, str]) -> int:
    if role == "epoch":
        return _owner(nodes, f"{prefix}:epoch")
    counts: dict[int, int] = {}
    for i, key in keys.items():
        entry = _owner(nodes, f"{prefix}:k:{key}")
        index = _owner(nodes, f"{prefix}:d:{{row:{i}}}:i")
        if role == "entry":
            counts[entry] = counts.get(entry, 0) + 1
        elif index != entry:
            counts[index] = counts.get(index, 0) + 1
    return max(counts, key=lambda port: counts[port])


@pytest.mark.parametrize("role", ["epoch", "index", "entry"])
def test_a_master_restarted_empty_serves_nothing_stale(
    cluster: list[RedisServer], role: str
) -> None:
    prefix = f"loss{uuid.uuid4().hex[:8]}"
    config = RedisConfig(url=cluster[0].url, prefix=prefix, cluster=True, socket_timeout=1.0)
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    truth = dict.fromkeys(range(ROWS), 0)
    lock = threading.Lock()
    keys: dict[int, str] = {}

    @cache_with_deps(cache_manager=manager, ttl=600, silent_backend_errors=True)
    def f(i: int) -> int:
        keys[i] = depcache.current_cache_key() or ""
        add_dependency(f"row:{i}")
        with lock:
            return truth[i]

    for i in range(ROWS):
        assert f(i) == 0
    for i in range(ROWS):
        assert f(i) == 0  # hits
    victim = next(n for n in cluster if n.port == _victim(cluster, prefix, role, keys))

    stop = threading.Event()
    reads = [0]
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                f(random.randrange(ROWS))
                reads[0] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    victim.executor.kill()  # SIGKILL: no persistence, the node comes back empty
    time.sleep(0.5)
    victim.start()
    _wait_cluster_ok(cluster, None, [])

    stale = unacknowledged = 0
    for i in range(ROWS):
        with lock:
            truth[i] += 1
        deadline = time.monotonic() + 20
        while True:
            try:
                manager.invalidate_dependency(f"row:{i}")
                break
            except depcache.BackendError:  # the cluster is still settling
                unacknowledged += 1
                assert time.monotonic() < deadline, "the cluster never took the invalidation"
                time.sleep(0.05)
        if f(i) != truth[i]:
            stale += 1
    stop.set()
    for thread in threads:
        thread.join(10)
    manager.close()
    figures = {"role": role, "rows": ROWS, "stale": stale, "reads_during": reads[0]}
    write_report(f"cluster_loss_{role}", figures, [f"{figures}"])
    assert errors == []
    assert reads[0] > 0
    assert stale == 0, figures
