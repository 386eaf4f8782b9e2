"""The two drivers of the cache flow: the only place where sync and async differ.

Each performs the operations yielded by :func:`~depcache.call._flow.cache_flow`, one method per kind
of operation: the sync driver calls the manager's sync backend and the function and waits on
threads; the async driver awaits the async backend, the coroutine function, async callbacks
and other tasks. A failing operation is thrown back into the flow. When the flow ends, however
it ends, the driver lands the single flight it leads and releases the lock it holds.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._flights import FOLLOW_TIMEOUT, Outcome
from ._flow import cache_flow
from ._hit import from_reply
from ._ops import (
    COMPUTE,
    Acquire,
    CallRecord,
    Check,
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

__all__ = ["run_async", "run_sync"]

logger = logging.getLogger("depcache")


class _Call:
    """State shared by both drivers for one call."""

    __slots__ = ("args", "flight", "kwargs", "lock", "manager", "record", "spec")

    def __init__(self, spec: CallSpec, manager: CacheManager, args: Any, kwargs: Any) -> None:
        self.spec = spec
        self.manager = manager
        self.args = args
        self.kwargs = kwargs
        self.record = CallRecord()
        self.flight: Any = None  # what this call must land, when it leads a single flight
        self.lock: str = ""  # the cross-process lock token this call holds

    def callback_kwargs(self, op: Notify) -> dict[str, Any]:
        return {
            "func": self.spec.func,
            "cache_manager": self.manager,
            "args": self.args,
            "kwargs": self.kwargs,
            "is_hit": op.is_hit,
            "cached_result": op.cached_result,
        }

    def callback_failed(self) -> None:
        if not self.manager.config.callback_error_silent:
            logger.exception("depcache callback failed")

    def outcome(self, ok: bool, value: Any) -> Outcome:
        if not self.record.cacheable:
            return None  # followers compute for themselves
        return (ok, value, self.record.dependencies)


def _lock_not_released(key: str, exc: Exception) -> None:
    # the lock expires by itself; the call's own outcome stands
    logger.warning("depcache: could not release the stampede lock of %s: %s", key, exc)


class _SyncCall(_Call):
    def perform(self, op: Operation) -> Any:
        return _SYNC[type(op)](self, op)

    def compute(self, _op: Any) -> Any:
        try:
            return True, self.spec.func(*self.args, **self.kwargs)
        except Exception as exc:
            return False, exc

    def lookup(self, op: Lookup) -> Any:
        return self.manager.backend.lookup(op.key)

    def store(self, op: Store) -> Any:
        return self.manager.backend.store(op.key, op.blob, op.ttl, op.dependencies, op.epoch)

    def discard(self, op: Discard) -> Any:
        return self.manager.backend.delete(op.key)

    def check(self, op: Check) -> Any:
        return self.manager.backend.check(op.epoch, op.dependencies)

    def join(self, op: Join) -> Any:
        flights = self.manager.sync_flights
        if flights is None:
            return None
        flight_key = (op.key, op.epoch)
        flight, event = flights.lead_or_follow(flight_key)
        if event is None:
            self.flight = (flight_key, flight)
            return None
        event.wait(FOLLOW_TIMEOUT)  # on timeout: compute alone
        return flight.outcome

    def acquire(self, op: Acquire) -> Any:
        token = self.manager.backend.acquire_lock(op.key, self.manager.config.stampede_lock_seconds)
        self.lock = token or ""
        return token

    def emit(self, op: Emit) -> None:
        self.manager.events.emit(op.event)

    def notify(self, op: Notify) -> None:
        if self.spec.callback is not None:
            try:
                self.spec.callback(**self.callback_kwargs(op))
            except Exception:
                self.callback_failed()

    def finish(self, key: str, outcome: Outcome) -> None:
        flights = self.manager.sync_flights
        if self.flight is not None and flights is not None:
            flights.land(self.flight[0], self.flight[1], outcome)
        if self.lock:
            try:
                self.manager.backend.release_lock(key, self.lock)
            except Exception as exc:
                _lock_not_released(key, exc)


_SYNC: dict[type, Callable[[_SyncCall, Any], Any]] = {
    type(COMPUTE): _SyncCall.compute,
    Lookup: _SyncCall.lookup,
    Store: _SyncCall.store,
    Discard: _SyncCall.discard,
    Check: _SyncCall.check,
    Join: _SyncCall.join,
    Acquire: _SyncCall.acquire,
    Emit: _SyncCall.emit,
    Notify: _SyncCall.notify,
}


def run_sync(spec: CallSpec, manager: CacheManager, key: str, args: Any, kwargs: Any) -> Any:
    """Run one call with blocking I/O; return its result or raise its exception."""
    reply = None
    if manager.l1 is None:  # look up first: a plain hit needs nothing more
        try:
            reply = manager.backend.lookup(key)
        except Exception:
            reply = None  # the flow looks up again and applies the error policy
        else:
            entry = from_reply(spec, manager, reply)
            if entry is not None:
                if entry.exception is not None:
                    raise entry.exception
                return entry.value
    call = _SyncCall(spec, manager, args, kwargs)
    flow: Flow = cache_flow(spec, manager, key, call.record, reply)
    outcome: Outcome = None
    try:
        op = next(flow)
        while True:
            try:
                reply = call.perform(op)
            except BaseException as exc:
                op = flow.throw(exc)
            else:
                op = flow.send(reply)
    except StopIteration as stop:
        outcome = call.outcome(True, stop.value)
        return stop.value
    except Exception as exc:
        outcome = call.outcome(False, exc)
        raise
    finally:
        call.finish(key, outcome)


class _AsyncCall(_Call):
    def perform(self, op: Operation) -> Awaitable[Any]:
        return _ASYNC[type(op)](self, op)

    async def compute(self, _op: Any) -> Any:
        try:
            return True, await self.spec.func(*self.args, **self.kwargs)
        except Exception as exc:
            return False, exc

    async def lookup(self, op: Lookup) -> Any:
        return await self.manager.async_backend.lookup(op.key)

    async def store(self, op: Store) -> Any:
        backend = self.manager.async_backend
        return await backend.store(op.key, op.blob, op.ttl, op.dependencies, op.epoch)

    async def discard(self, op: Discard) -> Any:
        return await self.manager.async_backend.delete(op.key)

    async def check(self, op: Check) -> Any:
        return await self.manager.async_backend.check(op.epoch, op.dependencies)

    async def join(self, op: Join) -> Any:
        flights = self.manager.async_flights
        if flights is None:
            return None
        flight_key = (op.key, op.epoch)
        future = flights.lead_or_follow(flight_key)
        if future is None:
            self.flight = flight_key
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(future), FOLLOW_TIMEOUT)
        except asyncio.TimeoutError:  # the leader is stuck: compute alone
            return None

    async def acquire(self, op: Acquire) -> Any:
        seconds = self.manager.config.stampede_lock_seconds
        token = await self.manager.async_backend.acquire_lock(op.key, seconds)
        self.lock = token or ""
        return token

    async def emit(self, op: Emit) -> None:
        await self.manager.events.aemit(op.event)

    async def notify(self, op: Notify) -> None:
        if self.spec.callback is not None:
            try:
                result = self.spec.callback(**self.callback_kwargs(op))
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.callback_failed()

    async def finish(self, key: str, outcome: Outcome) -> None:
        flights = self.manager.async_flights
        if self.flight is not None and flights is not None:
            flights.land(self.flight, outcome)
        if self.lock:
            try:
                await self.manager.async_backend.release_lock(key, self.lock)
            except Exception as exc:
                _lock_not_released(key, exc)


_ASYNC: dict[type, Callable[[_AsyncCall, Any], Awaitable[Any]]] = {
    type(COMPUTE): _AsyncCall.compute,
    Lookup: _AsyncCall.lookup,
    Store: _AsyncCall.store,
    Discard: _AsyncCall.discard,
    Check: _AsyncCall.check,
    Join: _AsyncCall.join,
    Acquire: _AsyncCall.acquire,
    Emit: _AsyncCall.emit,
    Notify: _AsyncCall.notify,
}


async def run_async(spec: CallSpec, manager: CacheManager, key: str, args: Any, kwargs: Any) -> Any:
    """Run one call without blocking the event loop; return or raise like the function."""
    reply = None
    if manager.l1 is None:  # look up first: a plain hit needs nothing more
        try:
            reply = await manager.async_backend.lookup(key)
        except Exception:
            reply = None  # the flow looks up again and applies the error policy
        else:
            entry = from_reply(spec, manager, reply)
            if entry is not None:
                if entry.exception is not None:
                    raise entry.exception
                return entry.value
    call = _AsyncCall(spec, manager, args, kwargs)
    flow: Flow = cache_flow(spec, manager, key, call.record, reply)
    outcome: Outcome = None
    try:
        op = next(flow)
        while True:
            try:
                reply = await call.perform(op)
            except BaseException as exc:
                op = flow.throw(exc)
            else:
                op = flow.send(reply)
    except StopIteration as stop:
        outcome = call.outcome(True, stop.value)
        return stop.value
    except Exception as exc:
        outcome = call.outcome(False, exc)
        raise
    finally:
        await call.finish(key, outcome)
