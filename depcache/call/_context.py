"""Per-call dependency tracking.

Each cached call that computes runs inside a :class:`Frame` held in a ContextVar, so tracking
is isolated per thread and per asyncio task. Dependencies added inside a call are collected
per namespace, the manager's prefix (what an invalidation acts on: managers that share a
prefix, whatever their names, in this process or another, share the dependencies); when the
frame ends (and when an inner call is a hit, from the entry's stored dependencies) they are
merged into the enclosing frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

from ..registry import registered_managers

if TYPE_CHECKING:
    from ..manager import CacheManager

logger = logging.getLogger("depcache")
__all__ = [
    "Frame",
    "add_dependencies",
    "add_dependency",
    "current_cache_key",
    "get_cache_manager",
    "mark_uncacheable",
    "set_cache_ttl",
]


class Frame:
    """The state of one computing cached call."""

    __slots__ = ("cacheable", "dependencies", "key", "manager", "parent", "token", "ttl")

    def __init__(
        self,
        manager: CacheManager,
        key: str,
        ttl: float | None,
        static: Iterable[str],
    ) -> None:
        self.manager = manager
        self.key = key
        self.ttl = ttl
        self.dependencies: dict[str, set[str]] = {manager.prefix: set(static)}
        self.parent: Frame | None = None
        self.token: Token[Frame | None] | None = None
        #: False once something it read must not be stored or shared (see mark_uncacheable)
        self.cacheable = True

    def enter(self) -> Frame:
        """Make this frame the current one."""
        self.parent = _current.get()
        self.token = _current.set(self)
        return self

    def exit(self) -> None:
        """Restore the enclosing frame and hand it this frame's dependencies."""
        if self.token is not None:
            _current.reset(self.token)
            self.token = None
        if self.parent is not None:
            merge_into(self.parent, self.dependencies)
            if not self.cacheable:
                self.parent.cacheable = False

    def own_dependencies(self) -> set[str]:
        """The dependencies this call's entry is indexed under (its own manager's)."""
        return self.dependencies.get(self.manager.prefix, set())


def merge_into(frame: Frame, dependencies: Mapping[str, Iterable[str]]) -> None:
    """Add ``dependencies`` (by namespace: a manager's prefix) to ``frame``."""
    for name, deps in dependencies.items():
        bucket = frame.dependencies.get(name)
        if bucket is None:
            frame.dependencies[name] = set(deps)
        else:
            bucket.update(deps)


_current: ContextVar[Frame | None] = ContextVar("depcache_frame", default=None)


def current_frame() -> Frame | None:
    """The frame of the innermost computing cached call, if any."""
    return _current.get()


def add_dependency(dependency: str, *, manager: str | None = None) -> None:
    """Make the current cached call depend on ``dependency``.

    Without ``manager`` the dependency belongs to the current call's manager; with it, to the
    named manager, and it is used when an enclosing call of that manager is stored. Outside a
    cached call this does nothing.

    Raises:
        TypeError: ``dependency`` (or ``manager``) is not a non-empty string.
    """
    if not isinstance(dependency, str) or not dependency:
        raise TypeError(f"dependency must be a non-empty str, got {dependency!r}")
    frame = _current.get()
    if frame is None:
        return
    if manager is None:
        namespace = frame.manager.prefix
    elif isinstance(manager, str) and manager:
        namespace = _namespace_of(frame, manager)
    else:
        raise TypeError(f"manager must be a manager name (str), got {manager!r}")
    bucket = frame.dependencies.get(namespace)
    if bucket is None:
        frame.dependencies[namespace] = {dependency}
    else:
        bucket.add(dependency)


def add_dependencies(dependencies: Iterable[str]) -> None:
    """Make the current cached call depend on every one of ``dependencies``, of its own
    manager, in one step; outside a cached call this does nothing.

    For depcache's own integrations (``depcache.db`` records each statement's dependencies
    with it): the items are not checked one by one, so each must be a non-empty ``str``.
    Application code uses :func:`add_dependency`.
    """
    frame = _current.get()
    if frame is None:
        return
    namespace = frame.manager.prefix
    bucket = frame.dependencies.get(namespace)
    if bucket is None:
        frame.dependencies[namespace] = set(dependencies)
    else:
        bucket.update(dependencies)


def _namespace_of(frame: Frame, name: str) -> str:
    """The prefix of the manager named ``name``: an enclosing call's, else the registered one's,
    else the name itself (a new named manager's prefix is its name)."""
    seen: Frame | None = frame
    while seen is not None:
        if seen.manager.name == name:
            return seen.manager.prefix
        seen = seen.parent
    registered = registered_managers().get(name)
    return registered.prefix if registered is not None else name


def mark_uncacheable(reason: str) -> None:
    """Return the current cached call's result without storing it or sharing it with
    concurrent calls (single flight); its enclosing cached calls are not stored either.

    For results computed from data no dependency can describe, such as rows a transaction has
    written but not committed yet (``depcache.db`` calls it then). ``reason`` is logged at
    DEBUG level when the result is not stored. Outside a cached call this does nothing.
    """
    frame = _current.get()
    if frame is not None and frame.cacheable:
        frame.cacheable = False
        logger.debug("depcache: %s will not be stored: %s", frame.key, reason)


def current_cache_key() -> str | None:
    """The cache key of the current cached call (without the manager's prefix), or None."""
    frame = _current.get()
    return None if frame is None else frame.key


def get_cache_manager() -> CacheManager | None:
    """The manager of the current cached call, or None outside one."""
    frame = _current.get()
    return None if frame is None else frame.manager


def set_cache_ttl(ttl: float | None) -> None:
    """Set the TTL (seconds) of the current call's entry; wins over the decorator's ``ttl``.

    ``None`` means no expiry. Outside a cached call this does nothing.

    Raises:
        ValueError: ``ttl`` is not a positive number or None.
    """
    ttl = validate_ttl(ttl, "set_cache_ttl")
    frame = _current.get()
    if frame is not None:
        frame.ttl = ttl


def validate_ttl(ttl: float | None, where: str) -> float | None:
    """Return ``ttl`` if it is None or a positive number; raise ValueError naming ``where``."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise ValueError(f"{where}: ttl must be a positive number of seconds or None, got {ttl!r}")
    return ttl
