"""The two drivers of the cache flow: the only place where sync and async differ.

Each performs the operations yielded by :func:`depcache.flow.cache_flow`: the sync driver
calls the manager's sync backend and the function and waits on threads; the async driver
awaits the async backend, the coroutine function, async callbacks and other tasks. Any failure
is thrown back into the flow. A driver that leads a single flight (``flights.py``) lands it
when the flow ends, however it ends.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any

from .flights import FOLLOW_TIMEOUT, Outcome
from .flow import COMPUTE, CallRecord, Emit, Join, Lookup, Notify, Operation, Store
from .flow import cache_flow as make_flow

if TYPE_CHECKING:
    from .decorator import CallSpec
    from .manager import CacheManager

__all__ = ["run_async", "run_sync"]

logger = logging.getLogger("depcache")


def _callback_kwargs(
    spec: CallSpec, manager: CacheManager, args: Any, kwargs: Any, op: Notify
) -> dict[str, Any]:
    return {
        "func": spec.func,
        "cache_manager": manager,
        "args": args,
        "kwargs": kwargs,
        "is_hit": op.is_hit,
        "cached_result": op.cached_result,
    }


def _callback_failed(manager: CacheManager) -> None:
    if not manager.config.callback_error_silent:
        logger.exception("depcache callback failed")


def run_sync(spec: CallSpec, manager: CacheManager, key: str, args: Any, kwargs: Any) -> Any:
    """Run one call with blocking I/O; return its result or raise its exception."""
    backend = manager.backend
    flights = manager.sync_flights
    record = CallRecord()
    led: list[Any] = []  # (flight key, flight) when this call leads a single flight

    def perform(op: Operation) -> Any:  # noqa: PLR0911 - one return per operation
        if op is COMPUTE:
            try:
                return True, spec.func(*args, **kwargs)
            except Exception as exc:
                return False, exc
        if isinstance(op, Lookup):
            return backend.lookup(op.key)
        if isinstance(op, Store):
            return backend.store(op.key, op.blob, op.ttl, op.dependencies, op.epoch)
        if isinstance(op, Join) and flights is not None:
            flight_key = (op.key, op.epoch)
            flight, event = flights.lead_or_follow(flight_key)
            if event is None:
                led.append((flight_key, flight))
                return None
            event.wait(FOLLOW_TIMEOUT)  # on timeout: compute alone
            return flight.outcome
        if isinstance(op, Emit):
            manager.events.emit(op.event)
        elif isinstance(op, Notify) and spec.callback is not None:
            try:
                spec.callback(**_callback_kwargs(spec, manager, args, kwargs, op))
            except Exception:
                _callback_failed(manager)
        return None

    flow = make_flow(spec, manager, key, record)
    outcome: Outcome = None
    try:
        op = next(flow)
        while True:
            try:
                reply = perform(op)
            except BaseException as exc:
                op = flow.throw(exc)
            else:
                op = flow.send(reply)
    except StopIteration as stop:
        outcome = (True, stop.value, record.dependencies)
        return stop.value
    except Exception as exc:
        outcome = (False, exc, record.dependencies)
        raise
    finally:
        if led and flights is not None:
            flights.land(led[0][0], led[0][1], outcome)


async def run_async(
    spec: CallSpec, manager: CacheManager, key: str, args: Any, kwargs: Any
) -> Any:
    """Run one call without blocking the event loop; return or raise like the function."""
    backend = manager.async_backend
    flights = manager.async_flights
    record = CallRecord()
    led: list[Any] = []  # the flight key when this call leads a single flight

    async def perform(op: Operation) -> Any:  # noqa: PLR0911 - one return per operation
        if op is COMPUTE:
            try:
                return True, await spec.func(*args, **kwargs)
            except Exception as exc:
                return False, exc
        if isinstance(op, Lookup):
            return await backend.lookup(op.key)
        if isinstance(op, Store):
            return await backend.store(op.key, op.blob, op.ttl, op.dependencies, op.epoch)
        if isinstance(op, Join) and flights is not None:
            flight_key = (op.key, op.epoch)
            future = flights.lead_or_follow(flight_key)
            if future is None:
                led.append(flight_key)
                return None
            try:
                return await asyncio.wait_for(asyncio.shield(future), FOLLOW_TIMEOUT)
            except asyncio.TimeoutError:  # the leader is stuck: compute alone
                return None
        if isinstance(op, Emit):
            await manager.events.aemit(op.event)
        elif isinstance(op, Notify) and spec.callback is not None:
            try:
                result = spec.callback(**_callback_kwargs(spec, manager, args, kwargs, op))
                if inspect.isawaitable(result):
                    await result
            except Exception:
                _callback_failed(manager)
        return None

    flow = make_flow(spec, manager, key, record)
    outcome: Outcome = None
    try:
        op = next(flow)
        while True:
            try:
                reply = await perform(op)
            except BaseException as exc:
                op = flow.throw(exc)
            else:
                op = flow.send(reply)
    except StopIteration as stop:
        outcome = (True, stop.value, record.dependencies)
        return stop.value
    except Exception as exc:
        outcome = (False, exc, record.dependencies)
        raise
    finally:
        if led and flights is not None:
            flights.land(led[0], outcome)
