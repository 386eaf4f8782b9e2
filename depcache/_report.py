"""``InvalidationReport``: what an invalidation across managers did (exported by ``depcache``;
:class:`~depcache.errors.InvalidationError` carries one). Below both the registry and the
errors, so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["InvalidationReport"]


@dataclass
class InvalidationReport:
    """The outcome of :func:`invalidate`: entries removed per manager, and errors."""

    dependencies: list[str]
    removed: dict[str, int] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every manager was invalidated."""
        return not self.errors

    @property
    def total(self) -> int:
        """Entries removed over all managers."""
        return sum(self.removed.values())
