"""Memory under churn: an hour of simulated traffic, dependency indexes stay bounded.

A dedicated redis-server (so ``INFO memory`` measures only this test) carries one manager.
Time runs ``memory_speedup`` times faster than the wall clock: entry TTLs (30 s to 5 min) and
the guard window (10 min) are divided by it. Users and items drift (new ids appear, old ones
go idle and are never touched again), results are cached, invalidated and deleted.

Every simulated 5 minutes the test counts the manager's keys by kind and the members of every
dependency index, and checks a bound that holds for any traffic rate: an index member was
added within the last two maximum TTLs (a store prunes its index's expired members, and an
index expires with its longest-lived member), a marker within the guard window, an entry
within one maximum TTL. After the hour, once every TTL has run out, nothing must be left but
the epoch counter.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps, set_cache_ttl
from tests.reliability.profile import PROFILE, Profile, write_report
from tests.support.servers import RedisServer, redis_server

pytestmark = [pytest.mark.redis, pytest.mark.timeout(PROFILE.timeout)]

PREFIX = "mem"
SAMPLE_EVERY = 300.0  # simulated seconds
MAX_TTL = 300.0  # simulated seconds
GUARD = 600.0  # simulated seconds
SLACK = 1.0  # real seconds of tolerance on the window bounds (scheduling, sampling time)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A fresh server for this test alone."""
    with redis_server() as srv:
        yield srv


class _Counter:
    """Timestamped cumulative counts, to ask "how many since t"."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.totals: list[int] = []

    def add(self, n: int = 1) -> None:
        with self.lock:
            self.times.append(time.monotonic())
            self.totals.append((self.totals[-1] if self.totals else 0) + n)

    def since(self, t: float) -> int:
        with self.lock:
            if not self.totals:
                return 0
            i = bisect.bisect_left(self.times, t)
            before = self.totals[i - 1] if i else 0
            return self.totals[-1] - before

    @property
    def total(self) -> int:
        with self.lock:
            return self.totals[-1] if self.totals else 0


def _census(client: redis.Redis) -> dict[str, int]:
    """The manager's keys by kind, index members, and Redis's memory (SCAN expires lazily)."""
    counts = {"entries": 0, "indexes": 0, "markers": 0, "other": 0}
    indexes = []
    for raw in client.scan_iter(match=f"{PREFIX}:*", count=1000):
        key = raw.decode()
        if key.startswith(f"{PREFIX}:k:"):
            counts["entries"] += 1
        elif key.startswith(f"{PREFIX}:d:") and key.endswith(":i"):
            counts["indexes"] += 1
            indexes.append(key)
        else:
            counts["other"] += 1
    pipe = client.pipeline(transaction=False)
    for key in indexes:
        pipe.zcard(key)
        pipe.zscore(key, "")  # the dependency's marker, kept in its index
    replies = pipe.execute() if indexes else []
    counts["markers"] = sum(1 for score in replies[1::2] if score is not None)
    counts["index_members"] = sum(int(n) for n in replies[0::2]) - counts["markers"]
    counts["keys"] = int(client.dbsize())
    counts["used_memory"] = int(client.info("memory")["used_memory"])
    return counts


def test_indexes_stay_bounded_under_churn(server: RedisServer, profile: Profile) -> None:
    speed = profile.memory_speedup
    client = redis.Redis(port=server.port)
    manager = depcache.get_or_create_cache_manager(
        PREFIX, config=RedisConfig(url=server.url, prefix=PREFIX, guard_seconds=GUARD / speed)
    )
    before = _census(client)
    additions, stores, invalidations = _Counter(), _Counter(), _Counter()
    ops = _Counter()
    t0 = time.monotonic()
    end = t0 + profile.memory_simulated_seconds / speed

    def now() -> float:  # simulated seconds since the start
        return (time.monotonic() - t0) * speed

    def users() -> range:  # 10 new users a simulated minute; 200 active at a time
        base = int(now() / 60) * 10
        return range(base, base + 200)

    def record(deps: int) -> None:
        stores.add()
        additions.add(deps)

    @cache_with_deps(cache_manager=manager)
    def profile_of(user: int) -> dict[str, Any]:
        add_dependency(f"user:{user}")
        set_cache_ttl(MAX_TTL / speed)
        record(1)
        return {"id": user, "name": f"user {user}"}

    @cache_with_deps(cache_manager=manager)
    def feed(user: int) -> list[int]:
        friends = [user + 1, user + 2, user + 3]
        for f in (user, *friends):
            add_dependency(f"user:{f}")
        set_cache_ttl(60 / speed)
        record(4)
        return friends

    @cache_with_deps(cache_manager=manager)
    def search(query: int) -> list[int]:
        items = [query * 7 + i for i in range(5)]
        for item in items:
            add_dependency(f"item:{item}")
        set_cache_ttl(30 / speed)
        record(5)
        return items

    errors: list[BaseException] = []

    def traffic(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while time.monotonic() < end:
                ids = users()
                user = rng.choice(ids)
                roll = rng.random()
                if roll < 0.60:
                    profile_of(user)
                elif roll < 0.75:
                    feed(user)
                elif roll < 0.82:
                    search(ids.start // 10 + rng.randrange(20))
                elif roll < 0.87:
                    manager.set(
                        f"blob:{user}", "x" * 200, ttl=120 / speed, dependencies=[f"user:{user}"]
                    )
                    record(1)
                elif roll < 0.89:
                    manager.delete(f"blob:{user}")  # leaves a dead name in user:{user}'s index
                elif roll < 0.97:
                    manager.invalidate_dependency(f"user:{user}")
                    invalidations.add()
                else:
                    manager.invalidate_dependency(
                        f"item:{ids.start // 10 * 7 + rng.randrange(140)}"
                    )
                    invalidations.add()
                ops.add()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=traffic, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    samples: list[dict[str, Any]] = []
    violations: list[str] = []
    try:
        while time.monotonic() < end:
            time.sleep(SAMPLE_EVERY / speed)
            at = time.monotonic()
            census = _census(client)
            bounds = {
                "index_members": additions.since(at - 2 * MAX_TTL / speed - SLACK),
                "entries": stores.since(at - MAX_TTL / speed - SLACK),
                # a marker is made by a store of a new dependency or by an invalidation
                "markers": additions.since(at - 2 * MAX_TTL / speed - SLACK)
                + invalidations.since(at - GUARD / speed - SLACK),
            }
            for name, bound in bounds.items():
                if census[name] > bound:
                    violations.append(f"t={now():.0f}s: {name} {census[name]} > {bound}")
            samples.append({"simulated_seconds": round(now()), **census, "bounds": bounds})
    finally:
        for t in threads:
            t.join(60)
    at_end = _census(client)
    # every TTL, and the guard window, run out: only the epoch counter may remain
    time.sleep((MAX_TTL + GUARD) / speed + SLACK)
    deadline = time.monotonic() + 60
    settled = _census(client)
    while settled["keys"] > 3 and time.monotonic() < deadline:  # epoch, floor, identities
        time.sleep(0.5)
        settled = _census(client)  # SCAN deletes expired keys it meets

    half = len(samples) // 2
    first_half_peak = max((s["index_members"] for s in samples[:half]), default=0)
    second_half_peak = max((s["index_members"] for s in samples[half:]), default=0)
    figures = {
        "simulated_seconds": profile.memory_simulated_seconds,
        "speedup": speed,
        "operations": ops.total,
        "stores": stores.total,
        "invalidations": invalidations.total,
        "before": before,
        "peak_used_memory": max(s["used_memory"] for s in samples),
        "index_members_peak_first_half": first_half_peak,
        "index_members_peak_second_half": second_half_peak,
        "at_end_of_traffic": at_end,
        "after_expiry": settled,
        "samples": samples,
        "violations": violations,
    }
    mib = 1024 * 1024
    write_report(
        "memory",
        figures,
        [
            f"{profile.memory_simulated_seconds / 3600:g} simulated hour(s) at {speed:g}x: "
            f"{ops.total:,} operations ({stores.total:,} stores, {invalidations.total:,} "
            "invalidations), users and items drifting.",
            "",
            "| | keys | entries | indexes | index members | markers | used_memory |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {label} | {c['keys']:,} | {c['entries']:,} | {c['indexes']:,} | "
                f"{c['index_members']:,} | {c['markers']:,} | {c['used_memory'] / mib:.2f} MiB |"
                for label, c in (
                    ("before", before),
                    *((f"t={s['simulated_seconds']}s", s) for s in samples),
                    ("end of traffic", at_end),
                    ("after every TTL ran out", settled),
                )
            ),
            "",
            f"Index members peaked at {first_half_peak:,} in the first half hour and "
            f"{second_half_peak:,} in the second; bound violations: {len(violations)}.",
        ],
    )
    assert errors == []
    assert ops.total > 1000
    assert len(samples) >= 6
    assert violations == []
    assert settled["indexes"] == 0, settled
    assert settled["markers"] == 0, settled
    assert settled["entries"] == 0, settled
    # the epoch, the floor and the record of the masters' identities (backends/watch.py)
    assert settled["keys"] <= 3, settled
    manager.close()
