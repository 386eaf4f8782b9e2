"""The Celery tasks ``depcache.invalidate`` and ``depcache.event``, and the retry path.

``depcache.invalidate(dependencies, managers=None)`` invalidates on every registered manager
(or the named ones). When some managers fail, the task retries for those managers only, with
exponential backoff (1, 2, 4, ... seconds, at most ``depcache_retry_backoff_max``), until they
succeed or ``depcache_retry_max_age`` seconds have passed since the first failure; then the
share is dead-lettered (kind ``expired``). A name that is not registered is dead-lettered at
once (kind ``unknown_manager``). It is also the retry path of the bus consumer and of
``depcache.event``: :func:`hand_off` sends it the failed share.

``depcache.event(event, data, dependencies=None)`` routes the event (see
:mod:`depcache_celery.events`) and invalidates what it maps to. An event that cannot be routed
is dead-lettered (kind ``malformed``) and the task fails with :class:`EventError`.

Both tasks acknowledge late and are requeued when the worker is lost: invalidating twice is
harmless. They count what they did in :mod:`depcache_celery.counters`; in a prefork pool child,
each task ends by saving the child's counters for the worker's main process
(:func:`~depcache_celery.counters.save_for_parent`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task

from . import deadletter
from .counters import save_for_parent, stats
from .events import EventError, Router, default_router
from .fanout import FanoutReport, apply
from .settings import Settings

__all__ = ["EVENT_TASK", "INVALIDATE_TASK", "Tasks", "backoff", "hand_off", "register_tasks"]

logger = logging.getLogger(__name__)

INVALIDATE_TASK = "depcache.invalidate"
EVENT_TASK = "depcache.event"


def backoff(attempt: int, cap: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, 4, ... capped at ``cap``)."""
    return float(min(cap, 2.0 ** max(0, attempt - 1)))


def hand_off(
    app: Celery,
    dependencies: list[str],
    managers: list[str],
    *,
    settings: Settings,
    attempt: int = 1,
    failing_since: float | None = None,
) -> None:
    """Send the failed share ``(dependencies, managers)`` to ``depcache.invalidate``, delayed by
    the backoff of ``attempt``. Raises when the broker did not take it."""
    app.send_task(
        INVALIDATE_TASK,
        args=[list(dependencies), list(managers)],
        kwargs={
            "attempt": attempt,
            "failing_since": failing_since if failing_since is not None else time.time(),
        },
        countdown=backoff(attempt, settings.retry_backoff_max),
    )


def _check_list(name: str, value: object) -> list[str]:
    if not isinstance(value, (list, tuple)) or any(
        not isinstance(item, str) or not item for item in value
    ):
        raise TypeError(f"{name} must be a list of non-empty strings, got {value!r}")
    return list(value)


@dataclass(frozen=True)
class Tasks:
    """The tasks registered on one app."""

    invalidate: Task[Any, Any]
    event: Task[Any, Any]


class _Runtime:
    """What the tasks of one app share: its settings (read on first use) and dead letters."""

    def __init__(self, app: Celery, router: Router | None) -> None:
        self.app = app
        self.router = router
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_conf(self.app.conf)
        return self._settings

    def dead_letter(self, kind: str, reason: str, **fields: Any) -> None:
        letter = deadletter.envelope(kind, reason, **fields)
        try:
            with self.app.producer_or_acquire() as producer:
                deadletter.publish(producer, self.settings.dead_letter_queue, letter)
        except Exception:
            logger.exception("depcache_celery: could not dead-letter (%s): %s", kind, reason)
            raise
        stats.dead_letter(kind)
        logger.error("depcache_celery: dead-lettered (%s): %s", kind, reason)

    @staticmethod
    def count(report: FanoutReport) -> None:
        stats.add("dependencies", len(report.dependencies))
        stats.add("entries_removed", report.total)
        for name in report.failed:
            stats.target_failed(name)

    def invalidate(
        self,
        task: Task[Any, Any],
        dependencies: list[str],
        managers: list[str] | None,
        attempt: int,
        failing_since: float | None,
    ) -> dict[str, object]:
        deps = _check_list("dependencies", dependencies)
        names = None if managers is None else _check_list("managers", managers)
        report = apply(deps, names)
        self.count(report)
        summary = report.summary()
        if report.unknown:
            self.dead_letter(
                "unknown_manager",
                f"no registered cache manager named {', '.join(report.unknown)}",
                dependencies=report.dependencies,
                managers=report.unknown,
            )
        if not report.errors:
            return summary
        failed = report.failed
        now = time.time()
        since = failing_since if failing_since is not None else now
        errors = {name: str(report.errors[name]) for name in failed}
        if now - since >= self.settings.retry_max_age:
            self.dead_letter(
                "expired",
                f"invalidation still failing on {', '.join(failed)} after {attempt + 1} "
                f"attempt(s) over {now - since:.1f} s",
                dependencies=report.dependencies,
                managers=failed,
                attempts=attempt + 1,
                errors=errors,
            )
            summary["expired"] = failed
            return summary
        stats.add("retries")
        logger.warning(
            "depcache_celery: invalidation failed on %s (attempt %d), retrying: %s",
            ", ".join(failed),
            attempt + 1,
            errors,
        )
        raise task.retry(
            args=(report.dependencies, failed),
            kwargs={"attempt": attempt + 1, "failing_since": since},
            countdown=backoff(attempt + 1, self.settings.retry_backoff_max),
        )

    def event(
        self, event: str, data: dict[str, Any], dependencies: list[str] | None
    ) -> dict[str, object]:
        stats.add("events")
        try:
            deps = (self.router or default_router).dependencies_for(event, data, dependencies)
        except EventError as exc:
            self.dead_letter(
                "malformed",
                str(exc),
                task=EVENT_TASK,
                event=event,
                data=data,
                dependencies=dependencies,
            )
            raise
        if not deps:
            stats.add("unhandled_events")
        report = apply(deps)
        self.count(report)
        if report.errors:
            hand_off(self.app, report.dependencies, report.failed, settings=self.settings)
            stats.add("retries")
        return report.summary()


def register_tasks(app: Celery, router: Router | None = None) -> Tasks:
    """Register ``depcache.invalidate`` and ``depcache.event`` on ``app``.

    ``router`` routes ``depcache.event``; None means :data:`default_router`.
    """
    runtime = _Runtime(app, router)

    @app.task(
        name=INVALIDATE_TASK,
        shared=False,  # only this app: a shared task would be added to every app made later
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=None,
    )
    def invalidate(
        self: Task[Any, Any],
        dependencies: list[str],
        managers: list[str] | None = None,
        *,
        attempt: int = 0,
        failing_since: float | None = None,
    ) -> dict[str, object]:
        try:
            return runtime.invalidate(self, dependencies, managers, attempt, failing_since)
        finally:
            save_for_parent()

    @app.task(name=EVENT_TASK, shared=False, acks_late=True, reject_on_worker_lost=True)
    def event(
        event: str,
        data: dict[str, Any],
        dependencies: list[str] | None = None,
    ) -> dict[str, object]:
        try:
            return runtime.event(event, data, dependencies)
        finally:
            save_for_parent()

    return Tasks(invalidate=invalidate, event=event)
