"""Redis Cluster failover under traffic: 3 masters with a replica each; while threads read
through cached functions (silent about backend errors) and writers change the truth and
invalidate, the masters holding the epoch and a dependency's index fail over to their replicas
(``CLUSTER FAILOVER``, the manual failover that waits for the replica to catch up). Callers
always get results, no read is stale, and after recovery every read returns the latest write.

A master that dies (SIGKILL) is not failed over this way: Redis replicates asynchronously, so
writes it acknowledged but had not yet sent to its replica (an invalidation among them) are
lost with it; the README says so.
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
from tests.support.server_fixtures import _require_binaries
from tests.support.servers import RedisServer, redis_cluster

pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def replicated_cluster() -> Iterator[list[RedisServer]]:
    """3 masters, one replica each (6 nodes), for this module."""
    _require_binaries()
    with redis_cluster(3, replicas=1) as nodes:
        deadline = time.monotonic() + 30
        while not _replicated(nodes):  # replicas show once they have synced
            assert time.monotonic() < deadline, "the replicas did not join"
            time.sleep(0.2)
        yield nodes


def _slots(nodes: list[RedisServer]) -> list[tuple[int, int, int, list[int]]]:
    """(first slot, last slot, master port, replica ports) per range."""
    client = redis.Redis(port=nodes[0].port)
    try:
        ranges = client.execute_command("CLUSTER", "SLOTS")
    finally:
        client.close()
    return [
        (int(start), int(end), int(master[1]), [int(r[1]) for r in replica_list])
        for start, end, master, *replica_list in ranges
    ]


def _replicated(nodes: list[RedisServer]) -> bool:
    return all(replicas for *_, replicas in _slots(nodes))


def _master_of(nodes: list[RedisServer], key: str) -> tuple[int, int]:
    """(master port, a replica port) of the slot of ``key``."""
    slot = key_slot(key.encode())
    for start, end, master, replicas in _slots(nodes):
        if start <= slot <= end and replicas:
            return master, replicas[0]
    raise AssertionError(f"no replicated master serves slot {slot}")


def _fail_over(nodes: list[RedisServer], key: str) -> tuple[int, int]:
    """Promote the replica of the master of ``key``'s slot; wait until it serves it."""
    old, replica = _master_of(nodes, key)
    client = redis.Redis(port=replica)
    try:
        client.execute_command("CLUSTER", "FAILOVER")
    finally:
        client.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if _master_of(nodes, key)[0] == replica:
                return old, replica
        except AssertionError:  # the demoted master has not yet shown as a replica
            pass
        time.sleep(0.1)
    raise AssertionError(f"the replica {replica} of {old} did not take over {key!r}")


def test_failover_under_traffic_serves_results_and_nothing_stale(
    replicated_cluster: list[RedisServer],
) -> None:
    nodes = replicated_cluster
    prefix = f"fo{uuid.uuid4().hex[:8]}"
    config = RedisConfig(
        url=nodes[0].url, prefix=prefix, cluster=True, socket_timeout=2.0, l1_size=1000
    )
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    keys = [f"k{i}" for i in range(4)]
    truth = dict.fromkeys(keys, 0)
    lock = threading.Lock()
    reads: list[tuple[str, float, int]] = []
    writes: list[tuple[str, int, float]] = []
    errors: list[BaseException] = []
    failed_invalidations = [0]
    stop = threading.Event()

    @cache_with_deps(cache_manager=manager, ttl=600, silent_backend_errors=True)
    def row(key: str) -> int:
        add_dependency(f"row:{key}")
        with lock:
            value = truth[key]
        time.sleep(random.random() * 0.002)
        return value

    @cache_with_deps(cache_manager=manager, ttl=600, silent_backend_errors=True)
    def page(key: str) -> tuple[str, int]:
        return ("page", row(key))

    def reader() -> None:
        try:
            while not stop.is_set():
                key = random.choice(keys)
                started = time.monotonic()
                value = page(key)[1] if random.random() < 0.5 else row(key)
                reads.append((key, started, value))
        except BaseException as exc:  # reported below
            errors.append(exc)

    def writer() -> None:
        while not stop.is_set():
            key = random.choice(keys)
            with lock:
                truth[key] += 1
                version = truth[key]
            while True:  # an invalidation that failed (mid-failover) is retried until done
                try:
                    manager.invalidate_dependency(f"row:{key}")
                    break
                except depcache.BackendError:
                    failed_invalidations[0] += 1
                    time.sleep(0.05)
            writes.append((key, version, time.monotonic()))
            time.sleep(random.random() * 0.005)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    threads += [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    moved: list[tuple[int, int]] = []
    try:
        time.sleep(1.5)
        moved.append(_fail_over(nodes, f"{prefix}:epoch"))  # the epoch's master
        time.sleep(1.5)
        moved.append(_fail_over(nodes, f"{prefix}:d:{{row:k0}}:i"))  # an index's master
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert len(reads) > 300
    assert len(writes) > 30
    assert moved[0][0] != moved[0][1]
    done: dict[str, list[tuple[float, int]]] = {}
    for key, version, finished in writes:
        done.setdefault(key, []).append((finished, version))
    stale = [
        (key, started, version)
        for key, started, version in reads
        if version < max((v for t, v in done.get(key, []) if t < started), default=0)
    ]
    assert stale == []
    # recovered: every read returns the latest write, through L1 and Redis alike
    time.sleep(0.5)  # the last announcements reach the L1
    for key in keys:
        assert row(key) == truth[key]
        assert page(key) == ("page", truth[key])
    manager.close()
