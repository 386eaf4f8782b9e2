"""The protocol of a Redis Cluster: short sequences of single-slot steps.

On a cluster the entry, the epoch and each dependency's index live in different slots, so the
atomic standalone scripts become steps; each batch of steps is one round trip, the nodes
answering in parallel (``docs/design.md``, "Redis Cluster").

Round trips:

* a hit: 2. The entry (on its node), then the floor and the marker of each of its
  dependencies (on theirs): an entry is served only if none was invalidated after it was
  computed, or lost (evicted, or gone with a node). That check is what makes a hit safe under
  eviction and node loss; it costs the second round trip.
* a miss plus store: 3. The entry, then the epoch (``epoch_read.lua``); after computing, the
  entry and, on each dependency's node, ``index.lua`` in one round trip. An index that refuses
  (its dependency was invalidated after the computation started) leaves the entry void, and it
  is dropped. Where a marker is missing on a node that may evict keys, two more: the current
  epoch, then ``mark.lua``.
* an invalidation: 4 whatever the number of entries. ``epoch_begin.lua`` takes an epoch and
  records it as in flight; ``detach.lua`` on each dependency's node raises its marker (from
  then on every entry computed before is void) and hands over its index; the entries it named
  are deleted and the in-flight record dropped; the announcement is published.

An invalidation is not atomic here, so a miss must not start from its epoch before the markers
are raised: a computation starting between steps 1 and 2 could read a nested entry not yet void
and store its result with markers that accept it. ``epoch_read.lua`` therefore returns the epoch
below every invalidation in flight (a :class:`~depcache.backends.base.HeldEpoch`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from ...announce import Announcer
from ..base import HeldEpoch
from ..runners import Command, Steps, as_int, script
from .layout import Layout, read_guard, stamp
from .locks import LockSteps

__all__ = ["ClusterProtocol"]

logger = logging.getLogger("depcache")

_REFUSED, _INDEXED, _UNMARKED = 0, 1, -1


class ClusterProtocol(Layout, LockSteps):
    """What a Redis Cluster runs for each backend operation (no I/O)."""

    def _epoch_read(self) -> Command:
        epoch, floor, nodes = self.epoch_keys
        return script(
            "epoch_read", (epoch, self._in_flight_key(), floor, nodes), self._in_flight_ms()
        )

    def _in_flight_key(self) -> str:
        """Invalidations between their steps 1 and 3, in the epoch's slot."""
        return f"{{{self._epoch_key()}}}:f"

    def _in_flight_ms(self) -> int:
        """How long an invalidation that never finished (its invalidator died) counts as in
        flight: a minute, or the guard window if longer."""
        return max(60_000, self.guard_ms)

    def lookup(self, key: str, floor: int | None = None) -> Steps:
        """The entry if it is still valid, else None and the epoch to compute from.

        ``floor`` is the prefix's floor as the deployment's watch last read it (then the hit
        does not read it from the epoch's node), or None."""
        (blob,) = yield [("GET", self.entry_prefix + key)]
        if blob is not None:
            guard = read_guard(blob, self.prefix)
            if guard is None:
                logger.warning("depcache entry %s is unreadable and will be replaced", key)
            elif (yield from self.check(guard.epoch, guard.dependencies, floor)):
                return blob, None
        ((epoch, held, _current),) = yield [self._epoch_read()]
        # held below an invalidation in flight: right for the store's check, not for sharing
        return None, HeldEpoch(as_int(epoch)) if as_int(held) else as_int(epoch)

    def check(self, epoch: int, dependencies: Iterable[str], floor: int | None = None) -> Steps:
        """Whether an entry computed from ``epoch`` with ``dependencies`` is still valid: the
        floor (given, or read on the epoch's node) and each dependency's marker (on its node),
        in one round trip."""
        checks: list[Command] = [] if floor is not None else [("GET", self.epoch_keys[1])]
        # a marker present and not above the epoch: the index's one member scored in
        # [-epoch, 0) (lookup.lua); a count is an integer reply, a score a double to format
        low = -epoch
        checks.extend(("ZCOUNT", self._deps_key(dep), low, "(0") for dep in dependencies)
        replies = (yield checks) if checks else []
        if floor is None:
            read, *replies = replies
            if read is None:
                return False
            floor = as_int(read)
        if epoch < floor:
            return False
        return all(as_int(count) == 1 for count in replies)

    def store(
        self,
        key: str,
        value: bytes,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
        may_evict: bool,
    ) -> Steps:
        """Store unless a dependency was invalidated after ``epoch`` (None: store at the
        current epoch). Returns whether the entry is stored and valid."""
        entry = self._cache_key(key)
        deps = sorted(set(dependencies))
        ttl_ms = self.ttl_ms(ttl)
        if epoch is None:
            ((_held, _flag, current),) = yield [self._epoch_read()]
            epoch = as_int(current)
            value = stamp(value, epoch)
        write: Command = ("SET", entry, value, "PX", ttl_ms) if ttl_ms else ("SET", entry, value)
        if not deps:
            yield [write]
            return True
        start = int(epoch)
        batch = [
            script("index", (self._deps_key(d),), key, ttl_ms, start, int(may_evict)) for d in deps
        ]
        batch.append(write)
        *states, _written = yield batch
        outcome = [as_int(state) for state in states]
        if all(state == _INDEXED for state in outcome):
            return True
        if _REFUSED in outcome:  # invalidated after the computation started: void
            yield [script("drop", (entry,), value)]
            return False
        # a marker is missing on a node that may evict keys: it may have recorded an
        # invalidation after `start`, which only the epoch can rule out
        ((_held, _flag, current),) = yield [self._epoch_read()]
        now = as_int(current)
        valid = now <= start
        fix = [
            script("mark", (self._deps_key(d),), now, key if valid else "", ttl_ms, self.guard_ms)
            for d, state in zip(deps, outcome, strict=True)
            if state == _UNMARKED
        ]
        if not valid:
            fix.append(script("drop", (entry,), value))
        yield fix
        return valid

    def invalidate(self, dependencies: Iterable[str], announcer: Announcer | None) -> Steps:
        """Invalidate (four round trips whatever the number of entries); return the number of
        entries removed."""
        deps = sorted(set(dependencies))
        if not deps:
            return 0
        ((epoch, in_flight),) = yield [
            script("epoch_begin", (self._epoch_key(), self._in_flight_key()), self._in_flight_ms())
        ]
        detached = yield [
            script("detach", (self._deps_key(d),), as_int(epoch), self.guard_ms) for d in deps
        ]
        prefix = self.entry_prefix.encode()
        members = sorted({prefix + m for batch in detached for m in batch})
        # the markers are raised: readers may start from this epoch, the entries are void
        final: list[Command] = [("DEL", m) for m in members]
        final.append(("ZREM", self._in_flight_key(), in_flight))
        *deleted, _ = yield final
        removed = sum(as_int(n) for n in deleted)
        if announcer is not None:
            yield [("PUBLISH", announcer.channel, announcer.message(deps, removed))]
        return removed

    def delete(self, keys: Sequence[str]) -> Steps:
        """Delete entries (one ``DEL`` each: they live in different slots)."""
        if not keys:
            return 0
        deleted = yield [("DEL", self._cache_key(k)) for k in keys]
        return sum(as_int(n) for n in deleted)

    def ttl(self, key: str) -> Steps:
        """Seconds left: -1 without expiry, -2 when missing."""
        (seconds,) = yield [("TTL", self._cache_key(key))]
        return as_int(seconds)
