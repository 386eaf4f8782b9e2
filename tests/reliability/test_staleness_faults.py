"""The staleness checker under eviction and node restarts on a Redis Cluster (issue 13).

A dedicated 3-master cluster whose masters evict keys at random (``maxmemory 3mb``,
``allkeys-random``) while a filler writes junk to keep them full, and whose masters are
SIGKILLed and restarted empty, one at a time, during the traffic. Readers (silent about backend
errors: a read during a restart computes) and writers (retrying their invalidation until it
returns: only then is a write done) run as threads, with nested reads, L1 off and on. Every read
is checked against the history of writes (``checker.py``): 0 stale.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster

from tests.reliability.profile import PROFILE, Profile, write_report
from tests.reliability.traffic import Setup, run_threads
from tests.server_fixtures import _require_binaries
from tests.servers import RedisServer, _wait_cluster_ok, redis_cluster

pytestmark = [pytest.mark.redis, pytest.mark.timeout(PROFILE.timeout + 60)]

# seconds between restarts: runs end at staleness_max_reads, a few seconds with an L1
RESTART_EVERY = 1.5


@pytest.fixture(scope="module")
def evicting_cluster() -> Iterator[list[RedisServer]]:
    _require_binaries()
    with redis_cluster(3, None, "--maxmemory", "3mb", "--maxmemory-policy", "allkeys-random") as n:
        yield n


class _Faults:
    """Keeps the masters evicting (junk keys) and restarts one at a time, empty."""

    def __init__(self, nodes: list[RedisServer]) -> None:
        self.nodes = nodes
        self.stop = threading.Event()
        self.restarts = 0
        self.errors: list[str] = []

    def fill(self) -> None:
        client = RedisCluster.from_url(self.nodes[0].url, socket_timeout=1.0)
        junk = b"j" * 1024
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                try:
                    client.set(f"junk:{n}", junk, ex=60)
                except redis.RedisError:
                    time.sleep(0.05)  # a master is restarting
        finally:
            client.close()

    def restart(self) -> None:
        rng = random.Random(1)
        try:
            while not self.stop.wait(RESTART_EVERY):
                node = rng.choice(self.nodes)
                node.executor.kill()
                time.sleep(0.3)
                node.start()
                _wait_cluster_ok(self.nodes, None, [])
                self.restarts += 1
        except Exception as exc:  # pragma: no cover - reported by the test
            self.errors.append(repr(exc))

    def evicted(self) -> int:
        total = 0
        for node in self.nodes:
            client = redis.Redis(port=node.port)
            total += int(client.info("stats")["evicted_keys"])
            client.close()
        return total


@pytest.mark.parametrize("l1", [False, True], ids=["nol1", "l1"])
def test_no_stale_read_under_eviction_and_restarts(
    evicting_cluster: list[RedisServer], redis_url: str, profile: Profile, l1: bool
) -> None:
    setup = Setup(
        url=evicting_cluster[0].url,
        cluster=True,
        l1=l1,
        prefix=f"sf{uuid.uuid4().hex[:8]}",
        truth_url=redis_url,
        faults=True,
    )
    faults = _Faults(evicting_cluster)
    threads = [threading.Thread(target=faults.fill), threading.Thread(target=faults.restart)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    try:
        history, errors = run_threads(
            setup, profile.staleness_seconds + 2, profile.staleness_max_reads
        )
    finally:
        faults.stop.set()
        for thread in threads:
            thread.join(60)
    _wait_cluster_ok(evicting_cluster, None, [])
    verdict = history.check()
    figures = {
        "configuration": f"cluster, evicting (allkeys-random), masters restarted, {setup.label}",
        "seconds": round(time.monotonic() - began, 2),
        "restarts": faults.restarts,
        "evicted_keys": faults.evicted(),
        **verdict.figures(),
    }
    write_report(f"staleness-faults-{setup.label}", figures, [str(figures)])
    assert faults.errors == []
    assert errors == []
    assert faults.restarts >= 1, figures
    assert figures["evicted_keys"] > 0, figures
    assert verdict.stale == [], verdict.figures()
    assert verdict.impossible == [], verdict.figures()
    assert verdict.reads >= profile.staleness_min_reads, verdict.figures()
    assert verdict.racing > 0
