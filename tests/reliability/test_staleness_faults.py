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
from tests.support.server_fixtures import _require_binaries
from tests.support.servers import RedisServer, _wait_cluster_ok, redis_cluster

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
        self.written = 0
        #: keys evicted by masters before they were restarted (a restart zeroes the count)
        self.evicted_before_restarts = 0

    def prefill(self) -> None:
        """Write junk until every master has evicted, so the run starts evicting (a slow
        machine would otherwise spend the whole run filling 3 MB)."""
        client = RedisCluster.from_url(self.nodes[0].url, socket_timeout=5.0)
        deadline = time.monotonic() + 60
        try:
            while self._evicted_now() == [] or min(self._evicted_now()) == 0:
                assert time.monotonic() < deadline, "the masters never evicted"
                self._write_junk(client, 200)
        finally:
            client.close()

    def fill(self) -> None:
        client = RedisCluster.from_url(self.nodes[0].url, socket_timeout=1.0)
        try:
            while not self.stop.is_set():
                try:
                    self._write_junk(client, 20)
                except redis.RedisError:
                    time.sleep(0.05)  # a master is restarting
        finally:
            client.close()

    def _write_junk(self, client: RedisCluster, count: int) -> None:
        pipe = client.pipeline()
        for _ in range(count):
            self.written += 1
            pipe.set(f"junk:{self.written}", b"j" * 4096, ex=60)
        pipe.execute()

    def restart(self) -> None:
        rng = random.Random(1)
        try:
            while not self.stop.wait(RESTART_EVERY):
                node = rng.choice(self.nodes)
                self.evicted_before_restarts += self._evicted_by(node)
                node.executor.kill()
                time.sleep(0.3)
                node.start()
                _wait_cluster_ok(self.nodes, None, [])
                self.restarts += 1
        except Exception as exc:  # pragma: no cover - reported by the test
            self.errors.append(repr(exc))

    def evicted(self) -> int:
        """Keys evicted in the run, restarted masters' counts included."""
        return self.evicted_before_restarts + sum(self._evicted_now())

    def _evicted_now(self) -> list[int]:
        return [self._evicted_by(node) for node in self.nodes]

    @staticmethod
    def _evicted_by(node: RedisServer) -> int:
        client = redis.Redis(port=node.port, socket_timeout=5.0)
        try:
            return int(client.info("stats")["evicted_keys"])
        except redis.RedisError:
            return 0
        finally:
            client.close()


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
    faults.prefill()
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
