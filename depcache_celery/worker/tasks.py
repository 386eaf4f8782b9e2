"""The Celery tasks ``depcache.invalidate`` and ``depcache.event``, and the retry path.

``depcache.invalidate(dependencies, managers=None)`` invalidates on every registered manager
(or the named ones). When some managers fail, the task retries for those managers only, with
exponential backoff (1, 2, 4, ... seconds, at most ``depcache_retry_backoff_max``), until they
succeed or ``depcache_retry_max_age`` seconds have passed since the first failure; then the
share is dead-lettered (kind ``expired``). A name that is not registered is dead-lettered at
once (kind ``unknown_manager``). It is also the retry path of the bus consumer and of
``depcache.event``: :func:`hand_off` sends it the failed share.

``depcache.event(event, data=None, dependencies=None)`` routes the event (see
:mod:`depcache_celery.worker.router`) and invalidates what it maps to. An event that cannot be
routed is dead-lettered (kind ``malformed``) and the task fails with :class:`EventError`.

Arguments that do not fit (``args=["user:1"]``: a string, not a list) are dead-lettered as
``malformed`` with the reason, like a bad bus message, and so is a share whose retries expired
(``expired``): the task then fails with :class:`DeadLettered`, an expected error Celery logs
as "raised expected" at INFO (never as "succeeded"), and its message is acknowledged.

Both tasks acknowledge late and are requeued when the worker is lost: invalidating twice is
harmless. They count what they did in :mod:`depcache_celery.worker.counters`; in a prefork pool
child, each task ends by saving the child's counters for the worker's main process
(:func:`~depcache_celery.worker.counters.save_for_parent`).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task

from .. import tracing
from ..bus import EVENT_TASK, INVALIDATE_TASK
from ..settings import Settings
from . import deadletter, metrics
from .counters import save_for_parent, stats
from .fanout import FanoutReport, apply
from .logfields import fields
from .router import EventError, Router, default_router

__all__ = [
    "EVENT_TASK",
    "INVALIDATE_TASK",
    "DeadLettered",
    "Tasks",
    "backoff",
    "hand_off",
    "register_tasks",
]

logger = logging.getLogger(__name__)


class DeadLettered(Exception):
    """The task's work went to the dead-letter queue (bad arguments, or retries expired): an
    expected failure, logged by Celery without a traceback."""


class BadTaskArguments(ValueError):
    """A task's arguments do not fit its signature or types."""


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
    event_ids: Sequence[str] = (),
    published_at: float | None = None,
) -> None:
    """Send the failed share ``(dependencies, managers)`` to ``depcache.invalidate``, delayed by
    the backoff of ``attempt``; ``event_ids`` (the events it comes from) follow it into the
    retries' log lines, and ``published_at`` (the earliest event's publication) into the
    publish-to-invalidated latency. Raises when the broker did not take it."""
    kwargs: dict[str, Any] = {
        "attempt": attempt,
        "failing_since": failing_since if failing_since is not None else time.time(),
    }
    if event_ids:
        kwargs["event_ids"] = list(event_ids)
    if published_at is not None:
        kwargs["published_at"] = published_at
    headers: dict[str, Any] = {}
    tracing.inject(headers)  # the retries continue the event's trace
    app.send_task(
        INVALIDATE_TASK,
        args=[list(dependencies), list(managers)],
        kwargs=kwargs,
        countdown=backoff(attempt, settings.retry_backoff_max),
        headers=headers or None,
    )


def _check_list(name: str, value: object) -> list[str]:
    if not isinstance(value, (list, tuple)) or any(
        not isinstance(item, str) or not item for item in value
    ):
        raise BadTaskArguments(f"{name} must be a list of non-empty strings, got {value!r}")
    return list(value)


def _invalidate_signature(
    dependencies: list[str],
    managers: list[str] | None = None,
    *,
    attempt: int = 0,
    failing_since: float | None = None,
    event_ids: list[str] | None = None,
    published_at: float | None = None,
) -> None:
    """The arguments of ``depcache.invalidate``."""


def _event_signature(
    event: str,
    data: dict[str, Any] | None = None,
    dependencies: list[str] | None = None,
    *,
    event_ids: list[str] | None = None,
) -> None:
    """The arguments of ``depcache.event``."""


def _bind(task: str, signature: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    try:
        bound = inspect.signature(signature).bind(*args, **kwargs)
    except TypeError as exc:
        raise BadTaskArguments(f"{exc}") from None
    bound.apply_defaults()
    return bound.arguments


@dataclass(frozen=True)
class InvalidateArgs:
    """Checked arguments of ``depcache.invalidate``."""

    dependencies: list[str]
    managers: list[str] | None
    attempt: int
    failing_since: float | None
    event_ids: list[str]
    published_at: float | None = None

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: dict[str, Any]) -> InvalidateArgs:
        """Raises BadTaskArguments naming what does not fit."""
        bound = _bind(INVALIDATE_TASK, _invalidate_signature, args, kwargs)
        managers = bound["managers"]
        attempt, since = bound["attempt"], bound["failing_since"]
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
            raise BadTaskArguments(f"attempt must be an integer >= 0, got {attempt!r}")
        if since is not None and (isinstance(since, bool) or not isinstance(since, (int, float))):
            raise BadTaskArguments(f"failing_since must be a Unix time, got {since!r}")
        ids, published = bound["event_ids"], bound["published_at"]
        if published is not None and (
            isinstance(published, bool) or not isinstance(published, (int, float))
        ):
            raise BadTaskArguments(f"published_at must be a Unix time, got {published!r}")
        return cls(
            dependencies=_check_list("dependencies", bound["dependencies"]),
            managers=None if managers is None else _check_list("managers", managers),
            attempt=attempt,
            failing_since=since,
            event_ids=[] if ids is None else _check_list("event_ids", ids),
            published_at=published,
        )


@dataclass(frozen=True)
class EventArgs:
    """Checked arguments of ``depcache.event``."""

    event: str
    data: dict[str, Any]
    dependencies: list[str] | None
    event_ids: list[str]

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: dict[str, Any]) -> EventArgs:
        """Raises BadTaskArguments naming what does not fit."""
        bound = _bind(EVENT_TASK, _event_signature, args, kwargs)
        event, data, deps = bound["event"], bound["data"], bound["dependencies"]
        if not isinstance(event, str) or not event:
            raise BadTaskArguments(f"event must be a non-empty string, got {event!r}")
        if data is None:
            data = {}
        if not isinstance(data, dict) or any(not isinstance(key, str) for key in data):
            raise BadTaskArguments(f"data must be an object with string keys, got {data!r}")
        ids = bound["event_ids"]
        return cls(
            event=event,
            data=data,
            dependencies=None if deps is None else _check_list("dependencies", deps),
            event_ids=[] if ids is None else _check_list("event_ids", ids),
        )


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

    def dead_letter(
        self, kind: str, reason: str, *, log: dict[str, Any] | None = None, **letter_fields: Any
    ) -> None:
        letter = deadletter.envelope(kind, reason, **letter_fields)
        extra = {**(log or fields()), "kind": kind, "reason": reason}
        try:
            with self.app.producer_or_acquire() as producer:
                deadletter.publish(producer, self.settings.dead_letter_queue, letter)
        except Exception:
            logger.exception(
                "depcache_celery: could not dead-letter (%s): %s", kind, reason, extra=extra
            )
            raise
        stats.dead_letter(kind)
        logger.error("depcache_celery: dead-lettered (%s): %s", kind, reason, extra=extra)

    def bad_arguments(
        self, task: str, exc: BadTaskArguments, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> DeadLettered:
        """Dead-letter a task whose arguments do not fit; the error to raise."""
        reason = f"{task}: bad arguments: {exc}"
        self.dead_letter(
            "malformed",
            reason,
            task=task,
            args=list(args),
            kwargs=dict(kwargs),
            log=fields(outcome="dead-lettered"),
        )
        return DeadLettered(reason)

    @staticmethod
    def count(report: FanoutReport) -> None:
        stats.add("dependencies", len(report.dependencies))
        stats.add("entries_removed", report.total)
        for name in report.failed:
            stats.target_failed(name)

    def invalidate(self, task: Task[Any, Any], call: InvalidateArgs) -> dict[str, object]:
        started = time.perf_counter()
        task_id = getattr(task.request, "id", None)
        ids = call.event_ids or [str(task_id)]
        report = apply(call.dependencies, call.managers)
        self.count(report)
        summary = report.summary()

        def log(**more: Any) -> dict[str, Any]:
            return fields(
                event_ids=ids,
                dependency_count=len(report.dependencies),
                managers=[*report.removed, *report.errors],
                duration=time.perf_counter() - started,
                removed=dict(report.removed),
                failed=report.failed,
                attempt=call.attempt,
                task_id=task_id,
                **more,
            )

        if report.unknown:
            self.dead_letter(
                "unknown_manager",
                f"no registered cache manager named {', '.join(report.unknown)}",
                dependencies=report.dependencies,
                managers=report.unknown,
                log=log(outcome="dead-lettered"),
            )
        for name in report.removed:
            metrics.observe_apply(name, time.perf_counter() - started)
            metrics.observe_invalidated(name, [call.published_at])
        if not report.errors:
            logger.info(
                "depcache_celery: invalidated %d dependencies on %s (task %s, attempt %d)",
                len(report.dependencies),
                ", ".join(sorted(report.removed)) or "no manager",
                task_id,
                call.attempt,
                extra=log(outcome="applied"),
            )
            return summary
        failed = report.failed
        now = time.time()
        since = call.failing_since if call.failing_since is not None else now
        errors = {name: str(report.errors[name]) for name in failed}
        if now - since >= self.settings.retry_max_age:
            reason = (
                f"invalidation still failing on {', '.join(failed)} after {call.attempt + 1} "
                f"attempt(s) over {now - since:.1f} s"
            )
            self.dead_letter(
                "expired",
                reason,
                dependencies=report.dependencies,
                managers=failed,
                attempts=call.attempt + 1,
                errors=errors,
                event_ids=call.event_ids,
                log=log(outcome="dead-lettered"),
            )
            raise DeadLettered(reason)
        stats.add("retries")
        logger.warning(
            "depcache_celery: invalidation failed on %s (attempt %d), retrying: %s",
            ", ".join(failed),
            call.attempt + 1,
            errors,
            extra=log(outcome="retry", errors=errors),
        )
        retry_kwargs: dict[str, Any] = {"attempt": call.attempt + 1, "failing_since": since}
        if call.event_ids:
            retry_kwargs["event_ids"] = call.event_ids
        if call.published_at is not None:
            retry_kwargs["published_at"] = call.published_at
        raise task.retry(
            args=(report.dependencies, failed),
            kwargs=retry_kwargs,
            countdown=backoff(call.attempt + 1, self.settings.retry_backoff_max),
        )

    def event(self, task_id: str | None, call: EventArgs) -> dict[str, object]:
        started = time.perf_counter()
        stats.add("events")
        ids = call.event_ids or [str(task_id)]
        try:
            deps = (self.router or default_router).dependencies_for(
                call.event, call.data, call.dependencies
            )
        except EventError as exc:
            self.dead_letter(
                "malformed",
                str(exc),
                task=EVENT_TASK,
                event=call.event,
                data=call.data,
                dependencies=call.dependencies,
                log=fields(event_ids=ids, routing_keys=[call.event], outcome="dead-lettered"),
            )
            raise
        if not deps:
            stats.add("unhandled_events")
        report = apply(deps)
        self.count(report)
        for name in report.removed:
            metrics.observe_apply(name, time.perf_counter() - started)
        outcome = "applied"
        if report.errors:
            hand_off(
                self.app,
                report.dependencies,
                report.failed,
                settings=self.settings,
                event_ids=ids,
            )
            stats.add("retries")
            outcome = "handed off"
        logger.info(
            "depcache_celery: event %r: %d dependencies on %s (task %s)",
            call.event,
            len(report.dependencies),
            ", ".join(sorted(report.removed)) or "no manager",
            task_id,
            extra=fields(
                event_ids=ids,
                routing_keys=[call.event],
                dependency_count=len(report.dependencies),
                managers=[*report.removed, *report.errors],
                duration=time.perf_counter() - started,
                removed=dict(report.removed),
                failed=report.failed,
                task_id=task_id,
                outcome=outcome,
            ),
        )
        return report.summary()


def _task_span(task: Task[Any, Any], name: str) -> Any:
    """The task's ``process`` span (a no-op while tracing is off), continuing the trace its
    sender put in the message's headers."""
    request = task.request
    headers: dict[str, Any] = {k: getattr(request, k, None) for k in ("traceparent", "tracestate")}
    carried: Any = getattr(request, "headers", None)
    if not headers["traceparent"] and isinstance(carried, dict):
        headers = dict(carried)
    return tracing.span(
        f"process {name}",
        "CONSUMER",
        {
            "messaging.system": "celery",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": str(
                (getattr(request, "delivery_info", None) or {}).get("routing_key") or ""
            ),
            "messaging.message.id": str(getattr(request, "id", "") or ""),
        },
        parent=tracing.extract(headers),
    )


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
        throws=(DeadLettered,),
    )
    def invalidate(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, object]:
        """``depcache.invalidate(dependencies, managers=None)`` (see the module)."""
        try:
            with _task_span(self, INVALIDATE_TASK):
                try:
                    call = InvalidateArgs.parse(args, kwargs)
                except BadTaskArguments as exc:
                    raise runtime.bad_arguments(INVALIDATE_TASK, exc, args, kwargs) from None
                return runtime.invalidate(self, call)
        finally:
            save_for_parent()

    @app.task(
        name=EVENT_TASK,
        shared=False,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        throws=(DeadLettered,),
    )
    def event(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, object]:
        """``depcache.event(event, data=None, dependencies=None)`` (see the module)."""
        try:
            with _task_span(self, EVENT_TASK):
                try:
                    call = EventArgs.parse(args, kwargs)
                except BadTaskArguments as exc:
                    raise runtime.bad_arguments(EVENT_TASK, exc, args, kwargs) from None
                return runtime.event(getattr(self.request, "id", None), call)
        finally:
            save_for_parent()

    return Tasks(invalidate=invalidate, event=event)
