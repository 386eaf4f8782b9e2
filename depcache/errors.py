"""The one error hierarchy of depcache: every error it raises derives from DepCacheError."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._report import InvalidationReport

__all__ = [
    "BackendError",
    "ConfigError",
    "ConfigWarning",
    "DepCacheError",
    "InvalidationError",
    "SerializationError",
    "UnknownManagerError",
]


class DepCacheError(Exception):
    """Base class of every error raised by depcache."""


class ConfigError(DepCacheError, ValueError):
    """A configuration value (argument or environment variable) is invalid."""


class ConfigWarning(UserWarning):
    """A setup that works but probably not as meant: a manager registered again with another
    configuration (the first one is kept), or a decorator naming a manager nobody registered
    (one is created from the environment)."""


class BackendError(DepCacheError):
    """The cache backend failed: unreachable server, timeout, or an unexpected reply.

    The message names the server (without credentials); ``__cause__`` is the original error.
    """


class SerializationError(DepCacheError, TypeError):
    """A value cannot be stored exactly by the configured serializer."""


class UnknownManagerError(DepCacheError, KeyError):
    """A manager name that is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InvalidationError(DepCacheError):
    """Invalidation failed on at least one manager; the others were still invalidated.

    ``report`` holds the per-manager outcome (entries removed, or the error raised).
    """

    def __init__(self, report: InvalidationReport) -> None:
        self.report = report
        failed = ", ".join(f"{name}: {err}" for name, err in sorted(report.errors.items()))
        super().__init__(f"invalidation failed on {len(report.errors)} manager(s): {failed}")

    @property
    def errors(self) -> Mapping[str, Exception]:
        """The error raised by each manager that failed, by manager name."""
        return self.report.errors
