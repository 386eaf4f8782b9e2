"""``@cache_with_deps``: cache a sync or async function's results with dependency tracking."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .. import observe
from ._drivers import run_async, run_sync
from ._hit import from_l1
from ._spec import CallSpec

if TYPE_CHECKING:
    from ..manager import CacheManager

__all__ = ["async_cache_with_deps", "cache_with_deps"]

F = TypeVar("F", bound=Callable[..., Any])

observing = observe.state


def cache_with_deps(
    *,
    name: str | None = None,
    ttl: float | None = None,
    dependencies: Iterable[str] | None = None,
    cache_exception_types: Iterable[type[BaseException]] | None = None,
    callback: Callable[..., Any] | None = None,
    silent_backend_errors: bool = False,
    cache_manager: CacheManager | None = None,
) -> Callable[[F], F]:
    """Cache a function's results, invalidated by the dependencies it declares.

    Works on sync and async functions. Inside the function, :func:`add_dependency` declares
    what the result depends on; cached functions called inside it pass their dependencies up
    (also when they are hits).

    Args:
        name: registry name of the manager (default: the default manager).
        ttl: seconds an entry lives (None: until invalidated); ``set_cache_ttl`` overrides it.
        dependencies: static dependencies of every call.
        cache_exception_types: exception types (and subclasses) whose raising is cached.
            Only ``Exception`` instances are ever cached: cancellation, ``KeyboardInterrupt``
            and ``SystemExit`` always propagate and store nothing.
        callback: called with ``func, cache_manager, args, kwargs, is_hit, cached_result`` on
            every hit and miss; errors in it are logged. Async callbacks need an async function.
        silent_backend_errors: log backend and serialization errors and return the computed
            result instead of raising.
        cache_manager: a manager to use directly instead of looking one up by ``name``.

    Raises:
        ValueError: ``ttl`` is not positive. TypeError: bad ``dependencies`` or exception types.
    """

    def decorate(func: F) -> F:
        is_async = inspect.iscoroutinefunction(func)
        cb = callback
        if cb is not None and not is_async and inspect.iscoroutinefunction(cb):
            warnings.warn(
                f"async callback given to sync function {func.__qualname__}: it is ignored",
                UserWarning,
                stacklevel=2,
            )
            cb = None
        spec = CallSpec(
            func,
            name=name,
            ttl=ttl,
            dependencies=dependencies,
            cache_exception_types=cache_exception_types,
            callback=cb,
            silent=silent_backend_errors,
            cache_manager=cache_manager,
        )
        template = spec.keys

        if is_async:

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                manager = spec.manager()
                if not manager.enabled:
                    return await func(*args, **kwargs)
                key = template.key(args, kwargs)
                if observing.on:  # metrics or tracing installed (see depcache.observe)
                    return await observe.call_async(
                        spec, manager, key, lambda: run_async(spec, manager, key, args, kwargs)
                    )
                if manager.l1 is not None:  # the in-process cache first
                    local = from_l1(spec, manager, key)
                    if local is not None:
                        if local.exception is not None:
                            raise local.exception
                        return local.value
                return await run_async(spec, manager, key, args, kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            manager = spec.manager()
            if not manager.enabled:
                return func(*args, **kwargs)
            key = template.key(args, kwargs)
            if observing.on:  # metrics or tracing installed (see depcache.observe)
                return observe.call_sync(
                    spec, manager, key, lambda: run_sync(spec, manager, key, args, kwargs)
                )
            if manager.l1 is not None:  # the in-process cache first
                local = from_l1(spec, manager, key)
                if local is not None:
                    if local.exception is not None:
                        raise local.exception
                    return local.value
            return run_sync(spec, manager, key, args, kwargs)

        return cast(F, sync_wrapper)

    return decorate


#: simple-dep-cache's README names this; ``cache_with_deps`` handles async functions itself.
async_cache_with_deps = cache_with_deps
