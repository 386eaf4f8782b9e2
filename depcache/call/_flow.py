"""The cache flow of one decorated call, written once for sync and async, with no I/O.

:func:`cache_flow` is a generator: it yields operations (:class:`Lookup`, :data:`COMPUTE`,
:class:`Store`, :class:`Emit`, :class:`Notify`) and receives their results. The drivers in
``_drivers.py`` perform them, with or without ``await``. A failing operation is thrown back
into the generator at the point it was yielded, so error policy lives here, once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..backends.base import HeldEpoch
from ..errors import SerializationError
from ..events import CacheEvent, CacheEventType
from ._context import Frame, current_frame, merge_into
from ._entry import CorruptEntry, Entry, decode_entry, encode_entry, encode_exception

if TYPE_CHECKING:
    from ..l1._local import LocalCache
    from ..manager import CacheManager
    from ._decorator import CallSpec

__all__ = [
    "COMPUTE",
    "Acquire",
    "CallRecord",
    "Check",
    "Discard",
    "Emit",
    "Join",
    "Lookup",
    "Notify",
    "Operation",
    "Store",
    "cache_flow",
    "local_hit",
    "quick_hit",
]

logger = logging.getLogger("depcache")


@dataclass(slots=True)
class Lookup:
    """Read the entry and the epoch. Result: ``(bytes | None, epoch | None)``."""

    key: str


class _Compute:
    """Call the function. Result: ``(True, value)`` or ``(False, exception)``."""

    __slots__ = ()


COMPUTE = _Compute()


@dataclass(slots=True)
class Check:
    """Whether an entry computed from ``epoch`` is still valid: none of ``dependencies`` (its
    manager's own) was invalidated since, or lost. Result: bool."""

    epoch: int
    dependencies: Iterable[str]


@dataclass(slots=True)
class Discard:
    """Delete an unreadable entry. Result: ignored."""

    key: str


@dataclass(slots=True)
class Store:
    """Store an entry unless a dependency was invalidated after ``epoch``. Result: bool."""

    key: str
    blob: bytes
    ttl: float | None
    dependencies: frozenset[str]
    epoch: int | None


@dataclass(slots=True)
class Join:
    """Single flight after a miss: lead the computation of ``key`` at ``epoch``, or wait for
    the call already leading it. Result: None (compute) or that call's outcome
    ``(ok, value or exception, dependencies)``. Calls share an outcome only if they read the
    same epoch, so no invalidation happened between the leader's lookup and the follower's."""

    key: str
    epoch: int


@dataclass(slots=True)
class Acquire:
    """Take the cross-process lock of ``key``. Result: a token (the driver releases it when
    the call ends), "" (no lock: compute), or None (another process computed it meanwhile:
    look again)."""

    key: str


@dataclass(slots=True)
class Emit:
    """Give an event to the manager's callbacks. Result: None."""

    event: CacheEvent


@dataclass(slots=True)
class Notify:
    """Call the decorator's ``callback``. Result: None."""

    is_hit: bool
    cached_result: Any


Operation = Lookup | _Compute | Join | Acquire | Store | Check | Discard | Emit | Notify
Flow = Generator[Operation, Any, Any]


def _event(kind: CacheEventType, key: str, **fields: Any) -> Emit:
    return Emit(CacheEvent(kind, key, time.time(), **fields))


class CallRecord:
    """What the drivers learn from a flow besides its result: the call's dependencies, and
    whether the result may be shared with concurrent calls (see ``mark_uncacheable``)."""

    __slots__ = ("cacheable", "dependencies")

    def __init__(self) -> None:
        self.dependencies: Mapping[str, Iterable[str]] = {}
        self.cacheable = True


def cache_flow(
    spec: CallSpec,
    manager: CacheManager,
    key: str,
    record: CallRecord | None = None,
    looked_up: tuple[bytes | None, int | None] | None = None,
) -> Flow:
    """Run one call: serve a hit, or compute, store and return (or raise) the outcome.

    ``looked_up`` is the backend's reply to a lookup the driver already made (its hit fast
    path); the flow then does not look up again.
    """
    record = record or CallRecord()
    events = manager.events.active
    l1 = manager.l1
    token = 0
    if l1 is not None:
        local = yield from _from_l1(manager, l1, key)
        if local is not None:
            return (yield from _serve(spec, key, local, record, events))
        token = l1.token()
    started = time.monotonic()
    reachable, entry, epoch = yield from _look_up(spec, manager, key, looked_up)
    if entry is not None:
        if l1 is not None:
            l1.put(key, entry, entry.dependencies.get(manager.prefix, ()), token)
        return (yield from _serve(spec, key, entry, record, events))
    if events:
        yield _event(CacheEventType.MISS, key)
    if epoch is not None:
        entry, epoch = yield from _avoid_stampede(spec, manager, key, epoch)
        if entry is not None:
            return (yield from _serve(spec, key, entry, record, False))

    frame = Frame(manager, key, spec.ttl, spec.dependencies).enter()
    try:
        ok, outcome = yield COMPUTE
    finally:
        frame.exit()
    record.dependencies = frame.dependencies
    record.cacheable = frame.cacheable
    if reachable and frame.cacheable and (ok or spec.caches(outcome)):
        stored = yield from _store(spec, manager, frame, ok, outcome, epoch, started)
        if stored and l1 is not None:
            value, error = (outcome, None) if ok else (None, outcome)
            entry = Entry(value, error, frame.dependencies, epoch)
            l1.put(key, entry, frame.own_dependencies(), token)
    if spec.callback is not None:
        yield Notify(False, None)
    if not ok:
        raise outcome
    return outcome


def _look_up(
    spec: CallSpec,
    manager: CacheManager,
    key: str,
    looked_up: tuple[bytes | None, int | None] | None = None,
) -> Generator[Operation, Any, tuple[bool, Entry | None, int | None]]:
    """Read the entry. Returns (backend reachable, decoded entry or None, epoch or None).

    An entry that cannot be decoded is deleted and looked up again, for the epoch a new
    computation starts from; if that fails too, the result is computed and not stored
    (reported as unreachable)."""
    for attempt in range(2):
        if looked_up is not None and attempt == 0:
            blob, epoch = looked_up
        else:
            try:
                blob, epoch = yield Lookup(key)
            except Exception as exc:
                if manager.events.active:
                    yield _event(CacheEventType.ERROR, key, value=exc)
                if not spec.silent:
                    raise
                logger.warning("depcache lookup failed for %s, computing: %s", key, exc)
                return False, None, None
        if blob is None:
            return True, None, epoch
        try:
            return True, decode_entry(manager.serializer, blob, spec.exception_types), epoch
        except CorruptEntry as exc:
            logger.warning("depcache entry %s is unreadable and will be replaced: %s", key, exc)
            try:
                yield Discard(key)
            except Exception as discard_error:
                if not spec.silent:
                    raise
                logger.warning("depcache could not delete %s: %s", key, discard_error)
                return False, None, None
    return False, None, None


def _from_l1(
    manager: CacheManager, l1: LocalCache, key: str
) -> Generator[Operation, Any, Entry | None]:
    """The L1 entry of ``key`` to serve, or None.

    Not inside a computation: an L1 entry may predate an invalidation whose announcement has
    not arrived yet, while the enclosing call's epoch was read after it. With ``l1_validate``
    the backend first confirms the entry is still valid (else it is dropped from the L1):
    another process's invalidation is honoured as soon as it returned."""
    local = l1.get(key) if current_frame() is None else None
    if local is None or not manager.config.l1_validate:
        return local
    if local.epoch is not None:
        own = local.dependencies.get(manager.prefix, ())
        try:
            if (yield Check(local.epoch, own)):
                return local
        except Exception as exc:  # the lookup that follows applies the error policy
            logger.debug("depcache: could not validate the L1 entry %s: %s", key, exc)
    l1.discard(key)
    return None


def _avoid_stampede(
    spec: CallSpec, manager: CacheManager, key: str, epoch: int
) -> Generator[Operation, Any, tuple[Entry | None, int | None]]:
    """After a miss: share a computation of this process (single flight) or wait for one of
    another process (stampede lock). Returns (entry to serve or None, epoch to store with)."""
    if manager.config.single_flight and not isinstance(epoch, HeldEpoch):
        shared = yield Join(key, epoch)
        if shared is not None:
            ok, outcome, dependencies = shared
            return Entry(outcome if ok else None, None if ok else outcome, dependencies), epoch
    if manager.config.stampede_lock:
        granted = yield Acquire(key)
        if granted is None:  # another process held the lock and is done: look again
            _reachable, entry, again = yield from _look_up(spec, manager, key)
            return entry, epoch if again is None else again
    return None, epoch


def quick_hit(
    spec: CallSpec, manager: CacheManager, key: str, reply: tuple[bytes | None, int | None]
) -> Entry | None:
    """The decoded entry of a lookup ``reply`` when the drivers may serve it without the flow
    (a readable hit, and no L1, events or callback to involve), dependencies handed up.

    The entry's dependency header is only parsed when there is an enclosing call to hand the
    dependencies to."""
    blob = reply[0]
    if blob is None or manager.l1 is not None or spec.callback is not None:
        return None
    if manager.events.active:
        return None
    parent = current_frame()
    try:
        entry = decode_entry(
            manager.serializer, blob, spec.exception_types, dependencies=parent is not None
        )
    except CorruptEntry:
        return None  # the flow logs it and recomputes
    if parent is not None and entry.dependencies:
        merge_into(parent, entry.dependencies)
    return entry


def local_hit(spec: CallSpec, manager: CacheManager, key: str) -> Entry | None:
    """The L1 entry of ``key`` when it can be served without the flow (no events, no
    callback to run, no enclosing cached call to hand its dependencies to); else None.

    The wrappers call this before building a flow: an L1 hit then costs a dictionary lookup.
    """
    l1 = manager.l1
    if l1 is None or spec.callback is not None or manager.events.active:
        return None
    if manager.config.l1_validate:  # needs a round trip: the flow does it
        return None
    if current_frame() is not None:  # inside a computation: see cache_flow
        return None
    return l1.get(key)  # no enclosing call: no dependencies to hand up


def _hand_up(entry: Entry) -> None:
    if entry.dependencies:
        parent = current_frame()
        if parent is not None:
            merge_into(parent, entry.dependencies)


def _serve(spec: CallSpec, key: str, entry: Entry, record: CallRecord, events: bool) -> Flow:
    """A hit: hand the entry's dependencies to the enclosing call, then return or raise."""
    record.dependencies = entry.dependencies
    _hand_up(entry)
    if events:
        yield _event(CacheEventType.HIT, key, value=entry.exception or entry.value)
    if spec.callback is not None:
        yield Notify(True, entry.exception or entry.value)
    if entry.exception is not None:
        raise entry.exception
    return entry.value


def _store(
    spec: CallSpec,
    manager: CacheManager,
    frame: Frame,
    ok: bool,
    outcome: Any,
    epoch: int | None,
    started: float,
) -> Generator[Operation, Any, bool]:
    """Encode and store the outcome; return whether it was stored."""
    key = frame.key
    elapsed = time.monotonic() - started
    if epoch is not None and elapsed >= manager.config.guard_seconds:
        logger.warning(
            "depcache: %s took %.0fs, longer than guard_seconds; result not stored", key, elapsed
        )
        return False
    try:
        if ok:
            blob = encode_entry(manager.serializer, outcome, frame.dependencies, epoch)
        else:
            blob = encode_exception(manager.serializer, outcome, frame.dependencies, epoch)
    except SerializationError as exc:
        if manager.events.active:
            yield _event(CacheEventType.ERROR, key, value=exc)
        if not spec.silent:
            raise
        logger.warning("depcache: %s not stored: %s", key, exc)
        return False
    deps = frozenset(frame.own_dependencies())
    try:
        stored = bool((yield Store(key, blob, frame.ttl, deps, epoch)))
    except Exception as exc:
        if manager.events.active:
            yield _event(CacheEventType.ERROR, key, value=exc)
        if not spec.silent:
            raise
        logger.warning("depcache store failed for %s: %s", key, exc)
        return False
    if not stored:
        logger.debug("depcache: %s not stored, a dependency was invalidated meanwhile", key)
        if manager.events.active:
            yield _event(CacheEventType.REFUSED, key, dependencies=set(deps))
    elif manager.events.active:
        value = outcome if ok else None
        yield _event(CacheEventType.SET, key, value=value, dependencies=set(deps), ttl=frame.ttl)
    return stored
