"""A hung Redis Cluster master (SIGSTOPped: it accepts connections but never answers) holds a
call no longer than ``socket_timeout`` allows, as a hung single server does: each call whose
entry, epoch or dependency index lives on that master returns the computed value
(``silent_backend_errors=True``) or raises BackendError within a few seconds, instead of
waiting for the whole pause; afterwards everything works again.

The cluster here is this module's own (a node is stopped), never the session's.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Timer
from typing import Any

import pytest
import redis
from redis.crc import key_slot
from redis.exceptions import TimeoutError as RedisTimeoutError

import depcache
from depcache import BackendError, RedisConfig, add_dependency, cache_with_deps
from depcache.backends.cluster import RedisClusterCacheBackend
from depcache.backends.cluster_client import create_cluster_client
from depcache.backends.cluster_runner import ClusterRunner
from depcache.call._keys import KeyTemplate
from tests.support.server_fixtures import _require_binaries
from tests.support.servers import RedisServer, redis_cluster

pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]

TIMEOUT = 1.0  # the managers' socket_timeout
PAUSE = 6.0  # how long the master hangs
# A failing decorated call waits at most twice: the driver's lookup, then the flow's (or the
# lookup, then the store). Well below the pause, with room for a loaded machine.
BOUND = 3.5


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[RedisServer]]:
    """3 masters for this module only: its tests stop nodes."""
    _require_binaries()
    with redis_cluster(3) as nodes:
        try:
            yield nodes
        finally:
            for node in nodes:
                node.resume()  # a stopped process would not see the stop signal


class Slots:
    """Which master serves a key (read once from CLUSTER SLOTS)."""

    def __init__(self, nodes: list[RedisServer]) -> None:
        client = redis.Redis(port=nodes[0].port)
        try:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        finally:
            client.close()
        self.ranges = [(int(start), int(end), int(master[1])) for start, end, master, *_ in ranges]

    def port_of(self, key: str) -> int:
        slot = key_slot(key.encode())
        return next(port for start, end, port in self.ranges if start <= slot <= end)


def _wait_cluster_ok(nodes: list[RedisServer], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for node in nodes:
            client = redis.Redis(port=node.port, socket_timeout=1)
            try:
                states.append(client.cluster("info").get("cluster_state"))
            except redis.RedisError as exc:
                states.append(repr(exc))
            finally:
                client.close()
        if all(state == "ok" for state in states):
            return
        assert time.monotonic() < deadline, f"the cluster did not recover: {states}"
        time.sleep(0.1)


@dataclass
class Case:
    """One operation to run while the master hangs, and what it must give."""

    name: str
    run: Callable[[], Awaitable[Any]]
    expected: Any  # the value, or BackendError
    calls: list[int] = field(default_factory=list)  # computations of the decorated function
    warm: Callable[[], Awaitable[Any]] | None = None  # before the pause
    after: Callable[[], Awaitable[None]] | None = None  # checks once the master is back


def _function(mode: str, calls: list[int]) -> Callable[..., Any]:
    if mode == "sync":

        def row(i: int) -> tuple[str, int]:
            add_dependency(f"row:{i}")
            calls.append(i)
            return ("row", i)

        return row

    async def arow(i: int) -> tuple[str, int]:
        add_dependency(f"row:{i}")
        calls.append(i)
        return ("row", i)

    return arow


class Layout:
    """Managers and arguments placed so that a given key lives on the hung master or not."""

    def __init__(self, slots: Slots, hung: int, base: str, url: str) -> None:
        self.slots, self.hung, self.base, self.url = slots, hung, base, url
        self.names = itertools.count()

    def on_hung(self, key: str) -> bool:
        return self.slots.port_of(key) == self.hung

    def manager(self, epoch_on_hung: bool) -> depcache.CacheManager:
        while True:
            name = f"{self.base}{next(self.names)}"
            config = RedisConfig(url=self.url, prefix=name, cluster=True, socket_timeout=TIMEOUT)
            backend = RedisClusterCacheBackend(config)
            if self.on_hung(backend._epoch_key()) == epoch_on_hung:
                return depcache.get_or_create_cache_manager(name, config=config)

    def argument(
        self, manager: depcache.CacheManager, func: Callable[..., Any], entry: bool, index: bool
    ) -> int:
        """An argument of ``func`` whose entry (and the index of ``row:<argument>``) lives on
        the hung master or not."""
        backend = manager.backend
        assert isinstance(backend, RedisClusterCacheBackend)
        template = KeyTemplate(func)
        for i in itertools.count():
            entry_key = backend._cache_key(template.key((i,), {}))
            index_key = backend._deps_key(f"row:{i}")
            if self.on_hung(entry_key) == entry and self.on_hung(index_key) == index:
                return i
        raise AssertionError("unreachable")

    def keys(self, manager: depcache.CacheManager, count: int) -> list[str]:
        """``count`` entry keys that live on the hung master."""
        backend = manager.backend
        assert isinstance(backend, RedisClusterCacheBackend)
        found = (
            k for k in (f"e{n}" for n in itertools.count()) if self.on_hung(backend._cache_key(k))
        )
        return list(itertools.islice(found, count))

    def dependency(self, manager: depcache.CacheManager, on_hung: bool) -> str:
        backend = manager.backend
        assert isinstance(backend, RedisClusterCacheBackend)
        for n in itertools.count():
            if self.on_hung(backend._deps_key(f"group:{n}")) == on_hung:
                return f"group:{n}"
        raise AssertionError("unreachable")


async def _call(pool: ThreadPoolExecutor, mode: str, func: Callable[..., Any], *args: Any) -> Any:
    if mode == "sync":
        return await asyncio.get_running_loop().run_in_executor(pool, func, *args)
    return await func(*args)


def _call_cases(layout: Layout, pool: ThreadPoolExecutor) -> list[Case]:
    """A decorated call per (mode, silent, role): the hung master holds its entry (a hit),
    its manager's epoch (a miss reads it), or its dependency's index (the store writes it)."""
    cases = []
    for mode, silent, role in itertools.product(
        ("sync", "async"), (False, True), ("entry", "epoch", "index")
    ):
        manager = layout.manager(epoch_on_hung=role == "epoch")
        calls: list[int] = []
        raw = _function(mode, calls)
        cached = cache_with_deps(cache_manager=manager, ttl=600, silent_backend_errors=silent)(raw)
        i = layout.argument(manager, raw, entry=role == "entry", index=role == "index")

        async def run(mode: str = mode, cached: Any = cached, i: int = i) -> Any:
            return await _call(pool, mode, cached, i)

        async def after(
            mode: str = mode, cached: Any = cached, i: int = i, m: Any = manager, c: Any = calls
        ) -> None:
            assert await _call(pool, mode, cached, i) == ("row", i)
            count = len(c)
            await _call(pool, mode, _invalidate(m, mode), f"row:{i}")
            assert await _call(pool, mode, cached, i) == ("row", i)
            assert len(c) == count + 1  # invalidated, computed again

        # connects every client; a hit needs its entry cached, a miss another argument's
        warm_with = i if role == "entry" else i + 1_000_000

        async def warm(mode: str = mode, cached: Any = cached, i: int = warm_with) -> Any:
            return await _call(pool, mode, cached, i)

        cases.append(
            Case(
                f"{mode} call, {role} on the hung master, silent={silent}",
                run,
                ("row", i) if silent else BackendError,
                calls,
                warm,
                after,
            )
        )
    return cases


def _invalidate(manager: depcache.CacheManager, mode: str) -> Callable[..., Any]:
    return manager.invalidate_dependency if mode == "sync" else manager.ainvalidate_dependency


def _invalidation_cases(layout: Layout, pool: ThreadPoolExecutor) -> list[Case]:
    """Invalidations whose dependency index, or whose entries, live on the hung master."""
    cases = []
    for mode in ("sync", "async"):
        manager = layout.manager(epoch_on_hung=False)
        dependency = layout.dependency(manager, on_hung=True)

        async def run(m: Any = manager, mode: str = mode, d: str = dependency) -> Any:
            return await _call(pool, mode, _invalidate(m, mode), d)

        cases.append(Case(f"{mode} invalidation, index on the hung master", run, BackendError))

        manager = layout.manager(epoch_on_hung=False)
        dependency = layout.dependency(manager, on_hung=False)
        keys = layout.keys(manager, 5)  # five entries: one wait, not one per entry
        for key in keys:
            manager.set(key, "v", dependencies={dependency})

        async def run_many(m: Any = manager, mode: str = mode, d: str = dependency) -> Any:
            return await _call(pool, mode, _invalidate(m, mode), d)

        async def gone(
            m: Any = manager, mode: str = mode, d: str = dependency, keys: list[str] = keys
        ) -> None:
            await _call(pool, mode, _invalidate(m, mode), d)
            assert not any(m.exists(k) for k in keys), "the entries outlived the invalidation"

        cases.append(
            Case(f"{mode} invalidation, 5 entries on the hung master", run_many, BackendError)
        )
        cases[-1].after = gone
    return cases


async def _timed(case: Case) -> tuple[float, Any]:
    started = time.monotonic()
    try:
        outcome = await case.run()
    except BackendError as exc:
        outcome = exc
    return time.monotonic() - started, outcome


async def test_a_hung_master_holds_no_call_longer_than_the_socket_timeout_allows(
    cluster: list[RedisServer], prefix: str
) -> None:
    hung = cluster[1]
    layout = Layout(Slots(cluster), hung.port, prefix, cluster[0].url)
    with ThreadPoolExecutor(max_workers=16) as pool:
        calls = _call_cases(layout, pool)
        cases = [*calls, *_invalidation_cases(layout, pool)]
        for case in calls:
            assert case.warm is not None
            await case.warm()
            case.calls.clear()

        hung.pause()
        resume = Timer(PAUSE, hung.resume)
        resume.start()
        try:
            outcomes = await asyncio.gather(*(_timed(case) for case in cases))
        finally:
            resume.join()  # the whole pause, then the node answers again
            hung.resume()

        slow = {c.name: round(d, 2) for c, (d, _) in zip(cases, outcomes, strict=True) if d > BOUND}
        assert not slow, f"calls waited longer than {BOUND}s (pause {PAUSE}s): {slow}"
        for case, (_, outcome) in zip(cases, outcomes, strict=True):
            if case.expected is BackendError:
                assert isinstance(outcome, BackendError), f"{case.name}: {outcome!r}"
            else:
                assert outcome == case.expected, f"{case.name}: {outcome!r}"
                assert case.calls == [case.expected[1]], f"{case.name}: not computed"

        _wait_cluster_ok(cluster)
        for case in cases:
            if case.after is not None:
                await case.after()


def test_a_batch_follows_a_moved_slot_but_waits_for_a_hung_node_once(
    cluster: list[RedisServer],
) -> None:
    """The sync batch runner sends commands redirected by MOVED again, to the slot's new
    master; when a node also hangs, the batch fails after one wait, not one per command."""
    client = create_cluster_client(
        RedisConfig(url=cluster[0].url, cluster=True, socket_timeout=TIMEOUT)
    )
    runner = ClusterRunner(client, 10)

    def run_batch(commands: list[tuple[Any, ...]]) -> list[Any]:
        # replies are raw on the fast path, redis-py's where redis-py followed a redirection
        return [True if reply == b"OK" else reply for reply in runner(commands)]

    try:
        slots = Slots(cluster)
        by_port = {node.port: node for node in cluster}

        def move(key: str, to: RedisServer) -> None:
            """Give the (empty) slot of ``key`` to ``to`` behind the client's back."""
            slot = key_slot(key.encode())
            source = redis.Redis(port=slots.port_of(key))
            target = redis.Redis(port=to.port)
            try:
                assert source.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
                node_id = target.execute_command("CLUSTER", "MYID")
                for node in (to, by_port[slots.port_of(key)], *cluster):
                    admin = redis.Redis(port=node.port)
                    admin.execute_command("CLUSTER", "SETSLOT", slot, "NODE", node_id)
                    admin.close()
            finally:
                source.close()
                target.close()

        def empty_slot_key(port: int, taken: set[int]) -> str:
            """A key of an empty slot served by ``port`` (other tests leave keys in the
            session's cluster), not one of ``taken`` (slots moved already)."""
            node = redis.Redis(port=port)
            try:
                for key in (f"m{uuid.uuid4().hex}" for _ in range(5000)):
                    slot = key_slot(key.encode())
                    if slots.port_of(key) != port or slot in taken:
                        continue
                    if node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0:
                        taken.add(slot)
                        return key
            finally:
                node.close()
            raise AssertionError(f"no empty slot found on {port}")

        a, b, c = (node.port for node in cluster)
        taken: set[int] = set()
        moved = empty_slot_key(a, taken)
        move(moved, by_port[b])
        assert run_batch([("SET", moved, "1"), ("GET", moved)]) == [True, b"1"]
        assert redis.Redis(port=b).get(moved) == b"1"

        # another slot moves, and the third master hangs with five commands of the batch
        moved = empty_slot_key(a, taken)
        move(moved, by_port[b])
        on_hung = [k for k in (f"h{n}" for n in range(1000)) if slots.port_of(k) == c][:5]
        for key in on_hung:
            client.get(key)  # a connection to the master that will hang
        by_port[c].pause()
        try:
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError):
                run_batch([("SET", moved, "2"), *(("GET", k) for k in on_hung)])
            waited = time.monotonic() - started
        finally:
            by_port[c].resume()
        assert waited < BOUND, f"waited {waited:.1f}s for one hung node"
        _wait_cluster_ok(cluster)
        assert run_batch([("GET", k) for k in on_hung]) == [None] * 5
    finally:
        client.close()
