"""Fan-out: invalidate dependencies on every registered manager (or the named ones).

Managers are invalidated concurrently by :func:`depcache.invalidate`; here its outcome becomes a
:class:`FanoutReport` (a :class:`~depcache.InvalidationReport` that also names the unknown
managers) that says, per manager, what was removed or what failed. Nothing is raised for a
failing manager: the caller decides what to retry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import depcache

__all__ = ["FanoutReport", "apply", "apply_one", "in_fanout", "unique"]

_in_fanout: ContextVar[bool] = ContextVar("depcache_celery_in_fanout", default=False)


def in_fanout() -> bool:
    """True while the worker's fan-out runs in this context: its invalidations must not be
    forwarded back to the worker (see :func:`depcache_celery.forward_invalidations`)."""
    return _in_fanout.get()


@contextmanager
def _fanning_out() -> Iterator[None]:
    token = _in_fanout.set(True)
    try:
        yield
    finally:
        _in_fanout.reset(token)


@dataclass
class FanoutReport(depcache.InvalidationReport):
    """The outcome of one :func:`apply`: a :class:`depcache.InvalidationReport` that also names
    the managers asked for that are not registered.

    ``removed``: entries deleted, per manager that succeeded. ``errors``: the error of each
    manager that failed (worth retrying). ``unknown``: names asked for that are not registered
    (not worth retrying in this process).
    """

    unknown: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every targeted manager was invalidated (none failed, none unknown)."""
        return not self.errors and not self.unknown

    @property
    def failed(self) -> list[str]:
        """The names of the managers that failed, sorted."""
        return sorted(self.errors)

    def summary(self) -> dict[str, object]:
        """A JSON-friendly view (errors as text), e.g. for a task result or a log line."""
        return {
            "dependencies": list(self.dependencies),
            "removed": dict(self.removed),
            "errors": {name: str(exc) for name, exc in sorted(self.errors.items())},
            "unknown": list(self.unknown),
        }


def unique(deps: Iterable[str]) -> list[str]:
    """``deps`` without duplicates, in first-seen order; each must be a non-empty string."""
    out: dict[str, None] = {}
    for dep in deps:
        if not isinstance(dep, str) or not dep:
            raise TypeError(f"dependencies must be non-empty strings, got {dep!r}")
        out[dep] = None
    return list(out)


def apply(deps: Iterable[str], managers: Iterable[str] | None = None) -> FanoutReport:
    """Invalidate ``deps`` (de-duplicated) on every registered manager, or on those named.

    Returns the per-manager outcome; a manager that fails is reported in ``errors``, a name that
    is not registered in ``unknown``. Never raises for a manager's failure.

    Raises:
        TypeError: a dependency is not a non-empty string.
    """
    dependencies = unique(deps)
    report = FanoutReport(dependencies)
    if not dependencies:
        return report
    names: list[str] | None = None
    if managers is not None:
        if isinstance(managers, str):
            raise TypeError("managers must be a list of manager names, not one string")
        registered = depcache.registered_managers()
        wanted = list(dict.fromkeys(managers))
        names = [name for name in wanted if name in registered]
        report.unknown = [name for name in wanted if name not in registered]
        if not names:
            return report
    try:
        with _fanning_out():
            result = depcache.invalidate(*dependencies, managers=names)
    except depcache.InvalidationError as exc:
        result = exc.report
    except KeyError as exc:  # a manager was unregistered meanwhile: report every target failed
        targets = names if names is not None else list(depcache.registered_managers())
        report.errors = dict.fromkeys(targets, exc)
        return report
    report.removed = dict(result.removed)
    for name, error in result.errors.items():
        report.errors[name] = error if isinstance(error, Exception) else RuntimeError(repr(error))
    return report


def apply_one(deps: Iterable[str], manager: str) -> FanoutReport:
    """``apply(deps, [manager])``, for the worker's lanes (one call per manager per share): the
    same report, without the fan-out's bookkeeping (one registry snapshot instead of two, no
    per-call report of :func:`depcache.invalidate`); the manager's invalidation runs in this
    thread, as :func:`depcache.invalidate` runs a single target.

    Raises:
        TypeError: a dependency is not a non-empty string.
    """
    dependencies = unique(deps)
    report = FanoutReport(dependencies)
    if not dependencies:
        return report
    target = depcache.registered_managers().get(manager)
    if target is None:
        report.unknown = [manager]
        return report
    token = _in_fanout.set(True)
    try:
        report.removed[manager] = target.invalidate_dependencies(*dependencies)
    except Exception as exc:
        report.errors[manager] = exc
    finally:
        _in_fanout.reset(token)
    return report
