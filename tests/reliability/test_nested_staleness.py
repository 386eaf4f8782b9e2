"""Two ways an outer cached call can store a stale result, found by the staleness checker.

Both concern nesting: ``page()`` calls ``row()``, so ``page``'s entry depends on ``row``'s
dependency. The guard compares the dependency's invalidation marker with the epoch ``page``
read at its lookup; both holes let ``page`` read an epoch *after* the invalidation began and
then consume a ``row`` value from *before* it:

1. L1: ``row`` is served from this process's L1 while the announcement of an invalidation
   made elsewhere is still in flight (or, in the invalidating process, between the backend's
   invalidation and the L1's). ``page`` stores it in Redis; every process then serves it.
2. Cluster: the invalidation takes its epoch (step 1) and detaches the index (step 2) before
   it deletes the entries (step 3); ``page`` reading the epoch after step 1 still finds the
   old ``row`` entry before step 3, and its store after step 2 passes the guard (the marker
   equals, not exceeds, the epoch it read) and is indexed where nobody will delete it.

Each was replayed deterministically here before depcache was fixed, and now guards its fix
(tests/reliability/README.md tells the holes and the fixes). The randomized staleness runs
nest reads in every configuration (``NESTED_SAFE`` in test_staleness.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps
from depcache.backends.cluster import RedisClusterCacheBackend
from depcache.backends.protocols import ClusterProtocol
from depcache.backends.runners import Steps

pytestmark = pytest.mark.redis


def _functions(manager: depcache.CacheManager, db: dict[str, int]) -> tuple[Any, Any]:
    @cache_with_deps(cache_manager=manager)
    def row() -> int:
        add_dependency("row")
        return db["row"]

    @cache_with_deps(cache_manager=manager)
    def page() -> tuple[str, int]:
        return ("page", row())

    return row, page


def _wait(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_inner_l1_hit_cannot_make_an_outer_entry_stale(redis_url: str, rel_prefix: str) -> None:
    reader = depcache.get_or_create_cache_manager(
        f"{rel_prefix}-reader",
        config=RedisConfig(url=redis_url, prefix=rel_prefix, l1_size=100, l1_max_age=600),
    )
    writer = depcache.get_or_create_cache_manager(  # another process, in effect: no shared L1
        f"{rel_prefix}-writer", config=RedisConfig(url=redis_url, prefix=rel_prefix)
    )
    assert reader._listener is not None
    assert reader._listener.subscribed.wait(10)
    l1 = reader.l1
    assert l1 is not None
    db = {"row": 1}
    row, page = _functions(reader, db)
    assert row() == 1  # in the reader's L1

    # hold the announcement "in flight": the reader's listener waits before applying it
    gate = threading.Event()
    applied = threading.Event()
    invalidate = l1.invalidate

    def delayed(deps: Iterable[str]) -> int:
        gate.wait(10)
        dropped = invalidate(deps)
        applied.set()
        return dropped

    l1.invalidate = delayed  # type: ignore[method-assign]
    db["row"] = 2
    writer.invalidate_dependency("row")  # completed in Redis; the reader does not know yet
    first = page()  # may return the old row: its read overlaps the announcement's delivery
    gate.set()
    assert applied.wait(10)
    assert first in {("page", 1), ("page", 2)}
    # the invalidation completed and reached the reader's L1 long ago: nothing old remains
    assert page() == ("page", 2)
    reader.close()
    writer.close()


class _PausingProtocol(ClusterProtocol):
    """Pauses an invalidation after its detach (step 2), before it deletes entries (step 3)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.paused = threading.Event()
        self.resume = threading.Event()

    def invalidate(self, dependencies: Iterable[str], announcer: Any) -> Steps:
        steps = super().invalidate(dependencies, announcer)
        reply: list[Any] = []
        sent = 0
        try:
            batch = next(steps)
            while True:
                if sent:
                    batch = steps.send(reply)
                if sent == 2:  # epoch and detach done, entries not deleted yet
                    self.paused.set()
                    assert self.resume.wait(10)
                sent += 1
                reply = yield batch
        except StopIteration as stop:
            return stop.value


class _PausingClusterBackend(RedisClusterCacheBackend):
    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.protocol = self.pausing = _PausingProtocol(config)


def test_outer_call_during_a_cluster_invalidation_is_not_stored_stale(
    cluster_url: str, cluster_nodes: Any, rel_prefix: str
) -> None:
    config = RedisConfig(url=cluster_url, prefix=rel_prefix, cluster=True)
    reader = depcache.get_or_create_cache_manager(f"{rel_prefix}-reader", config=config)
    pausing = _PausingClusterBackend(config)
    writer = depcache.get_or_create_cache_manager(
        f"{rel_prefix}-writer", config=config, backend=pausing
    )
    db = {"row": 1}
    row, page = _functions(reader, db)
    assert row() == 1  # stored in the cluster
    db["row"] = 2
    invalidation = threading.Thread(target=writer.invalidate_dependency, args=("row",))
    invalidation.start()
    assert pausing.pausing.paused.wait(10)  # epoch taken, index detached, entries not deleted yet
    first = page()  # overlaps the invalidation: the old row is allowed here
    pausing.pausing.resume.set()
    invalidation.join(10)
    assert not invalidation.is_alive()
    assert first in {("page", 1), ("page", 2)}
    assert page() == ("page", 2)  # the invalidation completed: nothing old may remain
    reader.close()
    writer.close()


def test_managers_sharing_a_prefix_keep_inner_dependencies(redis_url: str, rel_prefix: str) -> None:
    first = depcache.get_or_create_cache_manager(
        f"{rel_prefix}-a", config=RedisConfig(url=redis_url, prefix=rel_prefix)
    )
    second = depcache.get_or_create_cache_manager(  # e.g. another service naming it otherwise
        f"{rel_prefix}-b", config=RedisConfig(url=redis_url, prefix=rel_prefix)
    )
    db = {"row": 1}
    row_first, _page_first = _functions(first, db)
    _row_second, page_second = _functions(second, db)
    assert row_first() == 1  # stored with its dependency recorded under the first's name
    assert page_second() == ("page", 1)  # the inner row is that hit
    db["row"] = 2
    assert first.invalidate_dependency("row") >= 1
    assert page_second() == ("page", 2)
