"""Serving a hit: every path by which a cached entry reaches the caller, in one place.

A call is served from, in this order:

1. the L1, before any flow is built (:func:`from_l1`, called by the decorator's wrappers): a
   dictionary lookup, when nothing else has to happen (:func:`plain`) and no enclosing call
   needs the entry's dependencies;
2. the backend's lookup reply, before any flow is built (:func:`from_reply`, called by the
   drivers, which looked up first): when there is no L1 to fill and nothing else to do;
3. the cache flow otherwise (``_flow.py``): the L1 entry, validated with the backend if
   configured (:func:`l1_entry`), then :func:`serve` for any hit it finds (events, callback).

The rules they share: an entry's dependencies join the enclosing cached call (:func:`hand_up`,
so an outer function depends on its inner hits); the L1 is not read inside a computation (its
entry may predate an invalidation the enclosing call's epoch already covers); a cached
exception is raised, not returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..events import CacheEvent, CacheEventType
from ._context import current_frame, merge_into
from ._entry import CorruptEntry, Entry, decode_entry
from ._ops import Check, Emit, Flow, Notify, Operation

if TYPE_CHECKING:
    from ..l1._local import LocalCache
    from ..manager import CacheManager
    from ._ops import CallRecord
    from ._spec import CallSpec

__all__ = ["from_l1", "from_reply", "hand_up", "l1_entry", "plain", "serve"]

logger = logging.getLogger("depcache")


def plain(spec: CallSpec, manager: CacheManager) -> bool:
    """Whether a hit needs nothing but its value: no callback to call, no events to emit."""
    return spec.callback is None and not manager.events.active


def from_l1(spec: CallSpec, manager: CacheManager, key: str) -> Entry | None:
    """The L1 entry of ``key`` when it can be served without the flow (a :func:`plain` hit,
    no validation round trip, no enclosing cached call to hand its dependencies to); else
    None. An L1 hit then costs a dictionary lookup."""
    l1 = manager.l1
    # plain(spec, manager), inlined: this is the whole cost of an L1 hit
    if l1 is None or spec.callback is not None or manager.events.active:
        return None
    if manager.config.l1_validate:  # needs a round trip: the flow does it
        return None
    if current_frame() is not None:  # inside a computation: see l1_entry
        return None
    return l1.get(key)  # no enclosing call: no dependencies to hand up


def from_reply(
    spec: CallSpec, manager: CacheManager, reply: tuple[bytes | None, int | None]
) -> Entry | None:
    """The decoded entry of a lookup ``reply`` when the drivers may serve it without the flow
    (a readable :func:`plain` hit, and no L1 to fill), its dependencies handed up; else None.

    The entry's dependency header is only parsed when there is an enclosing call to hand the
    dependencies to."""
    blob = reply[0]
    # plain(spec, manager), inlined: the hit path
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


def l1_entry(
    manager: CacheManager, l1: LocalCache, key: str
) -> Generator[Operation, Any, Entry | None]:
    """The L1 entry of ``key`` for the flow to serve, or None.

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


def hand_up(entry: Entry) -> None:
    """Add the entry's dependencies to the enclosing cached call, if any."""
    if entry.dependencies:
        parent = current_frame()
        if parent is not None:
            merge_into(parent, entry.dependencies)


def serve(spec: CallSpec, key: str, entry: Entry, record: CallRecord, events: bool) -> Flow:
    """A hit in the flow: hand the entry's dependencies up, emit the event and call the
    callback, then return the value or raise the cached exception."""
    record.dependencies = entry.dependencies
    hand_up(entry)
    outcome = entry.exception or entry.value
    if events:
        yield Emit(CacheEvent(CacheEventType.HIT, key, time.time(), value=outcome))
    if spec.callback is not None:
        yield Notify(True, outcome)
    if entry.exception is not None:
        raise entry.exception
    return entry.value
