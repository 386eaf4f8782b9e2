"""``CallSpec``: everything about a decorated function that is known at decoration time.

Below the decorator, the flow, the drivers and the hit path, which all read it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigWarning
from ..registry import get_or_create_cache_manager, registered_managers, registry_generation
from ._context import validate_ttl
from ._keys import KeyTemplate

if TYPE_CHECKING:
    from ..manager import CacheManager

__all__ = ["CallSpec"]


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
