"""The two drivers of the cache flow: the only place where sync and async differ.

Each performs the operations yielded by :func:`depcache.flow.cache_flow`: the sync driver
calls the manager's sync backend and the function; the async driver awaits the async backend,
the coroutine function and async callbacks. Any failure is thrown back into the flow.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

from .flow import COMPUTE, Emit, Flow, Lookup, Notify, Operation, Store

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


def run_sync(flow: Flow, spec: CallSpec, manager: CacheManager, args: Any, kwargs: Any) -> Any:
    """Drive ``flow`` with blocking I/O; return the call's result or raise its exception."""
    backend = manager.backend

    def perform(op: Operation) -> Any:
        if op is COMPUTE:
            try:
                return True, spec.func(*args, **kwargs)
            except Exception as exc:
                return False, exc
        if isinstance(op, Lookup):
            return backend.lookup(op.key)
        if isinstance(op, Store):
            return backend.store(op.key, op.blob, op.ttl, op.dependencies, op.epoch)
        if isinstance(op, Emit):
            manager.events.emit(op.event)
        elif isinstance(op, Notify) and spec.callback is not None:
            try:
                spec.callback(**_callback_kwargs(spec, manager, args, kwargs, op))
            except Exception:
                _callback_failed(manager)
        return None

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
        return stop.value


async def run_async(
    flow: Flow, spec: CallSpec, manager: CacheManager, args: Any, kwargs: Any
) -> Any:
    """Drive ``flow`` without blocking the event loop; return or raise like the function."""
    backend = manager.async_backend

    async def perform(op: Operation) -> Any:
        if op is COMPUTE:
            try:
                return True, await spec.func(*args, **kwargs)
            except Exception as exc:
                return False, exc
        if isinstance(op, Lookup):
            return await backend.lookup(op.key)
        if isinstance(op, Store):
            return await backend.store(op.key, op.blob, op.ttl, op.dependencies, op.epoch)
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
        return stop.value
