"""``@cache_with_deps``: cache a sync or async function's results with dependency tracking."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .. import observe
from ..errors import ConfigWarning
from ..registry import get_or_create_cache_manager, registered_managers, registry_generation
from ._context import validate_ttl
from ._drivers import run_async, run_sync
from ._flow import local_hit
from ._keys import KeyTemplate

if TYPE_CHECKING:
    from ..manager import CacheManager

__all__ = ["CallSpec", "async_cache_with_deps", "cache_with_deps"]

F = TypeVar("F", bound=Callable[..., Any])

observing = observe.state


class CallSpec:
    """Everything about a decorated function that is known at decoration time."""

    __slots__ = (
        "_generation",
        "_manager",
        "callback",
        "dependencies",
        "exception_types",
        "explicit_manager",
        "func",
        "keys",
        "name",
        "silent",
        "ttl",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None,
        ttl: float | None,
        dependencies: Iterable[str] | None,
        cache_exception_types: Iterable[type[BaseException]] | None,
        callback: Callable[..., Any] | None,
        silent: bool,
        cache_manager: CacheManager | None,
    ) -> None:
        self.func = func
        self.keys = KeyTemplate(func)
        self.name = name
        self.ttl = validate_ttl(ttl, f"cache_with_deps({func.__qualname__})")
        self.dependencies = frozenset(_check_dependencies(dependencies))
        self.exception_types = _check_exception_types(cache_exception_types)
        self.callback = callback
        self.silent = bool(silent)
        self.explicit_manager = cache_manager
        self._manager: CacheManager | None = None
        self._generation = -1

    def caches(self, exc: BaseException) -> bool:
        """Whether a raised ``exc`` is cached (an instance of a listed type)."""
        return bool(self.exception_types) and isinstance(exc, self.exception_types)

    def manager(self) -> CacheManager:
        """The manager for this call (looked up once per registry generation)."""
        if self.explicit_manager is not None:
            return self.explicit_manager
        generation = registry_generation()
        if self._generation != generation or self._manager is None:
            if self.name is not None and self.name not in registered_managers():
                self._manager = get_or_create_cache_manager(self.name)
                warnings.warn(
                    f"{self.func.__qualname__} is cached by manager {self.name!r}, which no "
                    "get_or_create_cache_manager() call registered: created it from the "
                    f"environment, {self._manager.config!r} (registered: "
                    f"{', '.join(sorted(registered_managers())) or 'none'})",
                    ConfigWarning,
                    stacklevel=3,
                )
            else:
                self._manager = get_or_create_cache_manager(self.name)
            self._generation = generation
        return self._manager


def _check_dependencies(dependencies: Iterable[str] | None) -> list[str]:
    if dependencies is None:
        return []
    if isinstance(dependencies, str):
        raise TypeError("dependencies must be an iterable of strings, not a single string")
    deps = list(dependencies)
    for dep in deps:
        if not isinstance(dep, str) or not dep:
            raise TypeError(f"dependencies must be non-empty strings, got {dep!r}")
    return deps


def _check_exception_types(
    types: Iterable[type[BaseException]] | None,
) -> tuple[type[BaseException], ...]:
    if not types:
        return ()
    checked = tuple(types)
    for cls in checked:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f"cache_exception_types must be exception classes, got {cls!r}")
    return checked


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
                    local = local_hit(spec, manager, key)
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
                local = local_hit(spec, manager, key)
                if local is not None:
                    if local.exception is not None:
                        raise local.exception
                    return local.value
            return run_sync(spec, manager, key, args, kwargs)

        return cast(F, sync_wrapper)

    return decorate


#: simple-dep-cache's README names this; ``cache_with_deps`` handles async functions itself.
async_cache_with_deps = cache_with_deps
