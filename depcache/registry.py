"""Named managers, and invalidation across all of them.

``get_or_create_cache_manager(name)`` returns the manager registered under ``name`` or creates
and registers one. ``invalidate(*deps)`` and ``ainvalidate(*deps)`` reach every registered
manager concurrently; when some fail, the others are still invalidated and
:class:`~depcache.errors.InvalidationError` carries the per-manager outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import warnings
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ._report import InvalidationReport
from .config import ConfigBase, RedisConfig
from .errors import ConfigWarning, InvalidationError, UnknownManagerError
from .manager import CacheManager

if TYPE_CHECKING:
    from .backends.base import AsyncCacheBackend, CacheBackend

__all__ = [
    "InvalidationReport",
    "ainvalidate",
    "get_or_create_cache_manager",
    "invalidate",
    "registered_managers",
]

_lock = threading.RLock()
_managers: dict[str, CacheManager] = {}
_generation = [0]  # bumped by reset_registry(); a list so no `global` is needed


def registry_generation() -> int:
    """A number that changes whenever the registry is reset (decorators re-resolve then)."""
    return _generation[0]


def _default_config(name: str | None) -> ConfigBase:
    base = ConfigBase()
    prefix = name if name is not None else base.prefix
    if base.backend == "memory" or base.cache_backend_class:
        return ConfigBase(prefix=prefix)
    return RedisConfig(prefix=prefix)


def get_or_create_cache_manager(
    name: str | None = None,
    config: ConfigBase | None = None,
    backend: CacheBackend | None = None,
    async_backend: AsyncCacheBackend | None = None,
) -> CacheManager:
    """Return the manager registered as ``name``, creating and registering it if needed.

    If a manager with that name exists, it is returned and the other arguments are ignored;
    when ``config`` differs from that manager's configuration, a :class:`ConfigWarning` names
    both (credentials masked), since the caller will not get the cache it described.
    ``name`` defaults to ``config.prefix`` (``DEP_CACHE_PREFIX``, default ``cache``). Without
    ``config``, a new manager gets a configuration from the environment whose prefix is
    ``name``: a Redis one, or an in-memory one with ``DEP_CACHE_BACKEND=memory``.
    """
    with _lock:
        key = name if name is not None else (config.prefix if config else ConfigBase().prefix)
        manager = _managers.get(key)
        if manager is not None and config is not None and not same_config(manager.config, config):
            warnings.warn(
                f"cache manager {key!r} is already registered with {manager.config!r}; "
                f"returning it, not one with {config!r}",
                ConfigWarning,
                stacklevel=2,
            )
        if manager is None:
            if config is None:
                source = backend or async_backend
                config = source.config if source is not None else _default_config(key)
            manager = CacheManager(config, name=key, backend=backend, async_backend=async_backend)
            _managers[key] = manager
        return manager


def same_config(a: ConfigBase, b: ConfigBase) -> bool:
    """Whether two configurations describe the same cache (same type, settings and URL)."""
    if a is b:
        return True
    return (
        type(a) is type(b)
        and a.to_dict() == b.to_dict()
        and getattr(a, "url", None) == getattr(b, "url", None)
    )


def registered_managers() -> dict[str, CacheManager]:
    """A snapshot of the registry: name to manager."""
    with _lock:
        return dict(_managers)


def reset_registry() -> None:
    """Forget every registered manager (connections are not closed)."""
    with _lock:
        _managers.clear()
        _generation[0] += 1


def _targets(managers: Iterable[str] | None) -> Mapping[str, CacheManager]:
    snapshot = registered_managers()
    if managers is None:
        return snapshot
    names = list(managers)
    missing = [n for n in names if n not in snapshot]
    if missing:
        raise UnknownManagerError(
            f"no registered cache manager named {', '.join(map(repr, missing))}"
        )
    return {n: snapshot[n] for n in names}


def _finish(report: InvalidationReport) -> InvalidationReport:
    if report.errors:
        raise InvalidationError(report)
    return report


def invalidate(*dependencies: str, managers: Iterable[str] | None = None) -> InvalidationReport:
    """Invalidate ``dependencies`` on every registered manager (or those named), concurrently.

    Returns:
        the per-manager report.

    Raises:
        InvalidationError: some managers failed (after all were tried); ``.report`` says which.
        UnknownManagerError: a name in ``managers`` is not registered (nothing is invalidated).
    """
    targets = _targets(managers)
    report = InvalidationReport(list(dependencies))
    if not targets or not dependencies:
        return report
    if len(targets) == 1:  # nothing to run side by side
        ((name, manager),) = targets.items()
        try:
            report.removed[name] = manager.invalidate_dependencies(*dependencies)
        except Exception as failure:
            report.errors[name] = failure
        return _finish(report)
    pool = _executor()
    # each call in a copy of the caller's context, so event callbacks see the caller's context
    futures = {
        name: pool.submit(contextvars.copy_context().run, m.invalidate_dependencies, *dependencies)
        for name, m in targets.items()
    }
    for name, future in futures.items():
        exc = future.exception()
        if exc is None:
            report.removed[name] = future.result()
        elif isinstance(exc, Exception):
            report.errors[name] = exc
        else:
            raise exc
    return _finish(report)


_pool: list[tuple[int, ThreadPoolExecutor]] = []  # (pid, executor): a fork needs a new one


def _executor() -> ThreadPoolExecutor:
    """The threads that invalidate managers side by side (made once per process)."""
    with _lock:
        if not _pool or _pool[0][0] != os.getpid():
            _pool[:] = [(os.getpid(), ThreadPoolExecutor(16, thread_name_prefix="depcache"))]
        return _pool[0][1]


async def ainvalidate(
    *dependencies: str, managers: Iterable[str] | None = None
) -> InvalidationReport:
    """Async :func:`invalidate`: every manager's async backend, concurrently."""
    targets = _targets(managers)
    report = InvalidationReport(list(dependencies))
    if not targets or not dependencies:
        return report
    results = await asyncio.gather(
        *(m.ainvalidate_dependencies(*dependencies) for m in targets.values()),
        return_exceptions=True,
    )
    for name, result in zip(targets, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            report.errors[name] = result
        else:
            report.removed[name] = result
    return _finish(report)
