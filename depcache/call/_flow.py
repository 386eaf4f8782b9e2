"""The cache flow of one decorated call, written once for sync and async, with no I/O.

:func:`cache_flow` is a generator: it yields operations (``_ops.py``: :class:`Lookup`,
:data:`COMPUTE`, :class:`Store`, :class:`Emit`, :class:`Notify`...) and receives their
results. The drivers in ``_drivers.py`` perform them, with or without ``await``. A failing
operation is thrown back into the generator at the point it was yielded, so error policy lives
here, once. Hits are served by ``_hit.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..backends.base import HeldEpoch
from ..errors import SerializationError
from ..events import CacheEvent, CacheEventType
from . import _hit
from ._context import Frame
from ._entry import CorruptEntry, Entry, decode_entry, encode_entry, encode_exception
from ._ops import (
    COMPUTE,
    Acquire,
    CallRecord,
    Discard,
    Emit,
    Flow,
    Join,
    Lookup,
    Notify,
    Operation,
    Store,
)

if TYPE_CHECKING:
    from ..manager import CacheManager
    from ._spec import CallSpec

__all__ = ["cache_flow"]

logger = logging.getLogger("depcache")


def _event(kind: CacheEventType, key: str, **fields: Any) -> Emit:
    return Emit(CacheEvent(kind, key, time.time(), **fields))


def _failed(
    spec: CallSpec, manager: CacheManager, key: str, exc: Exception, what: str
) -> Generator[Operation, Any, None]:
    """A backend or serializer step failed: emit an ERROR event, then raise ``exc`` unless the
    decorator is silent, else log ``"depcache" + what`` (``%s``: the key) and the error."""
    if manager.events.active:
        yield _event(CacheEventType.ERROR, key, value=exc)
    if not spec.silent:
        raise exc
    logger.warning("depcache" + what + ": %s", key, exc)


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
        local = yield from _hit.l1_entry(manager, l1, key)
        if local is not None:
            return (yield from _hit.serve(spec, key, local, record, events))
        token = l1.token()
    started = time.monotonic()
    reachable, entry, epoch = yield from _look_up(spec, manager, key, looked_up)
    if entry is not None:
        if l1 is not None:
            l1.put(key, entry, entry.dependencies.get(manager.prefix, ()), token)
        return (yield from _hit.serve(spec, key, entry, record, events))
    if events:
        yield _event(CacheEventType.MISS, key)
    if epoch is not None:
        entry, epoch = yield from _avoid_stampede(spec, manager, key, epoch)
        if entry is not None:
            return (yield from _hit.serve(spec, key, entry, record, False))

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
                yield from _failed(spec, manager, key, exc, " lookup failed for %s, computing")
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
        yield from _failed(spec, manager, key, exc, ": %s not stored")
        return False
    deps = frozenset(frame.own_dependencies())
    try:
        stored = bool((yield Store(key, blob, frame.ttl, deps, epoch)))
    except Exception as exc:
        yield from _failed(spec, manager, key, exc, " store failed for %s")
        return False
    if not stored:
        logger.debug("depcache: %s not stored, a dependency was invalidated meanwhile", key)
        if manager.events.active:
            yield _event(CacheEventType.REFUSED, key, dependencies=set(deps))
    elif manager.events.active:
        value = outcome if ok else None
        yield _event(CacheEventType.SET, key, value=value, dependencies=set(deps), ttl=frame.ttl)
    return stored
