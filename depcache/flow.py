"""The cache flow of one decorated call, written once for sync and async, with no I/O.

:func:`cache_flow` is a generator: it yields operations (:class:`Lookup`, :data:`COMPUTE`,
:class:`Store`, :class:`Emit`, :class:`Notify`) and receives their results. The drivers in
``drivers.py`` perform them, with or without ``await``. A failing operation is thrown back
into the generator at the point it was yielded, so error policy lives here, once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .context import Frame, current_frame, merge_into
from .entry import CorruptEntry, decode_entry, encode_entry, encode_exception
from .errors import SerializationError
from .events import CacheEvent, CacheEventType

if TYPE_CHECKING:
    from .decorator import CallSpec
    from .manager import CacheManager

__all__ = ["COMPUTE", "Emit", "Lookup", "Notify", "Operation", "Store", "cache_flow"]

logger = logging.getLogger("depcache")


@dataclass(frozen=True, slots=True)
class Lookup:
    """Read the entry and the epoch. Result: ``(bytes | None, epoch | None)``."""

    key: str


class _Compute:
    """Call the function. Result: ``(True, value)`` or ``(False, exception)``."""

    __slots__ = ()


COMPUTE = _Compute()


@dataclass(frozen=True, slots=True)
class Store:
    """Store an entry unless a dependency was invalidated after ``epoch``. Result: bool."""

    key: str
    blob: bytes
    ttl: float | None
    dependencies: frozenset[str]
    epoch: int | None


@dataclass(frozen=True, slots=True)
class Emit:
    """Give an event to the manager's callbacks. Result: None."""

    event: CacheEvent


@dataclass(frozen=True, slots=True)
class Notify:
    """Call the decorator's ``callback``. Result: None."""

    is_hit: bool
    cached_result: Any


Operation = Lookup | _Compute | Store | Emit | Notify
Flow = Generator[Operation, Any, Any]


def _event(kind: CacheEventType, key: str, **fields: Any) -> Emit:
    return Emit(CacheEvent(kind, key, time.time(), **fields))


def cache_flow(spec: CallSpec, manager: CacheManager, key: str) -> Flow:  # noqa: PLR0912
    # one branch per step of the flow; splitting it would hide the order of the steps
    """Run one call: serve a hit, or compute, store and return (or raise) the outcome."""
    events = manager.events.active
    started = time.monotonic()
    try:
        blob, epoch = yield Lookup(key)
        reachable = True
    except Exception as exc:
        if not spec.silent:
            raise
        logger.warning("depcache lookup failed for %s, computing: %s", key, exc)
        blob, epoch, reachable = None, None, False

    if blob is not None:
        try:
            entry = decode_entry(manager.serializer, blob, spec.exception_types)
        except CorruptEntry as exc:
            logger.warning("depcache entry %s is unreadable and will be replaced: %s", key, exc)
        else:
            if entry.dependencies:
                parent = current_frame()
                if parent is not None:
                    merge_into(parent, entry.dependencies)
            if events:
                yield _event(CacheEventType.HIT, key, value=entry.exception or entry.value)
            if spec.callback is not None:
                yield Notify(True, entry.exception or entry.value)
            if entry.exception is not None:
                raise entry.exception
            return entry.value

    if events:
        yield _event(CacheEventType.MISS, key)
    frame = Frame(manager, key, spec.ttl, spec.dependencies).enter()
    try:
        ok, outcome = yield COMPUTE
    finally:
        frame.exit()

    if reachable and (ok or spec.caches(outcome)):
        yield from _store(
            spec,
            manager,
            frame,
            outcome if ok else None,
            None if ok else outcome,
            epoch,
            started,
            events,
        )
    if spec.callback is not None:
        yield Notify(False, None)
    if not ok:
        raise outcome
    return outcome


def _store(
    spec: CallSpec,
    manager: CacheManager,
    frame: Frame,
    value: Any,
    exception: BaseException | None,
    epoch: int | None,
    started: float,
    events: bool,
) -> Flow:
    key = frame.key
    elapsed = time.monotonic() - started
    if epoch is not None and elapsed >= manager.config.guard_seconds:
        logger.warning(
            "depcache: %s took %.0fs, longer than guard_seconds; result not stored", key, elapsed
        )
        return
    try:
        if exception is None:
            blob = encode_entry(manager.serializer, value, frame.dependencies)
        else:
            blob = encode_exception(manager.serializer, exception, frame.dependencies)
    except SerializationError as exc:
        if not spec.silent:
            raise
        logger.warning("depcache: %s not stored: %s", key, exc)
        return
    deps = frozenset(frame.own_dependencies())
    try:
        stored = yield Store(key, blob, frame.ttl, deps, epoch)
    except Exception as exc:
        if not spec.silent:
            raise
        logger.warning("depcache store failed for %s: %s", key, exc)
        return
    if not stored:
        logger.debug("depcache: %s not stored, a dependency was invalidated meanwhile", key)
    elif events:
        yield _event(CacheEventType.SET, key, value=value, dependencies=set(deps), ttl=frame.ttl)
