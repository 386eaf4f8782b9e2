"""Batches of bus messages: parse, route, one invalidation for all, then acknowledge.

A batch maps to one invalidation of the union of its messages' dependencies, de-duplicated, on
every manager. Per message:

- malformed (see :mod:`depcache_celery.worker.messages`) or not routable (:class:`EventError`):
  published to the dead-letter queue with the reason, then acknowledged;
- valid: acknowledged once every manager applied the batch, or once the share of the managers
  that failed has been handed to the retry path (the ``depcache.invalidate`` task, with those
  managers' names, retried with backoff). If even that hand-off fails, the messages stay
  unacknowledged, so the broker redelivers them when the channel closes.

:meth:`BatchProcessor.process` does all of it in the calling thread. The worker's consumer splits
it: :meth:`BatchProcessor.prepare` (route, dead-letter) and :meth:`BatchProcessor.finish`
(count, hand off, acknowledge) run in its consumer thread, since kombu channels are not
thread-safe, while :class:`Lanes` applies the dependencies on the managers in other threads: one
lane per manager, so a manager that hangs holds up only its own lane. A lane that is busy when
more batches come for it applies them all at once when it is free (one invalidation of their
union; the entries it removed are counted on the first of them).

Nothing raises out of :meth:`BatchProcessor.prepare`, :meth:`BatchProcessor.finish` or
:meth:`BatchProcessor.process`: on the Redis transport an exception escaping a consumer callback
stops the worker consuming.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kombu.message import Message

from .. import tracing
from ..bus import PUBLISHED_AT_HEADER
from . import deadletter, metrics
from .counters import Stats, stats
from .fanout import FanoutReport, apply, apply_one, unique
from .logfields import fields
from .messages import BadMessage, parse_message
from .router import EventError, Router

__all__ = ["Batch", "BatchOutcome", "BatchProcessor", "Lanes"]

logger = logging.getLogger(__name__)

DeadLetterFn = Callable[[dict[str, Any]], None]
HandOffFn = Callable[[list[str], list[str]], None]
ApplyFn = Callable[[Iterable[str]], FanoutReport]
ApplyOneFn = Callable[[list[str], str], FanoutReport]
AckManyFn = Callable[[Sequence[Message]], int]


@dataclass
class BatchOutcome:
    """What :meth:`BatchProcessor.process` did with a batch (for logs and tests)."""

    received: int = 0
    acked: int = 0
    dead_lettered: int = 0
    unacked: int = 0
    dependencies: list[str] = field(default_factory=list)
    report: FanoutReport | None = None
    handed_off: list[str] = field(default_factory=list)


def published_at(message: Message) -> float | None:
    """When ``message`` was published (Unix seconds), if its producer said so."""
    headers: Any = message.headers or {}
    stamp: Any = headers.get(PUBLISHED_AT_HEADER)
    if stamp is None:
        properties: Any = message.properties or {}
        stamp = properties.get("timestamp")
    if hasattr(stamp, "timestamp"):  # a datetime, as py-amqp decodes the AMQP timestamp
        stamp = stamp.timestamp()
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and stamp > 0:
        return float(stamp)
    return None


@dataclass
class Batch:
    """A batch after :meth:`BatchProcessor.prepare`: its valid messages, still unacknowledged,
    the de-duplicated union of their dependencies, and per message its event id, routing key
    and publication time (for logs, metrics and traces)."""

    messages: list[Message]
    dependencies: list[str]
    outcome: BatchOutcome
    event_ids: list[str | None] = field(default_factory=list)
    routing_keys: list[str | None] = field(default_factory=list)
    published_at: list[float | None] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    span: Any = None
    """The batch's ``process`` span while tracing is on (see :mod:`depcache_celery.tracing`)."""

    def log_fields(self, **more: Any) -> dict[str, Any]:
        """The ``extra=`` of this batch's log lines (see
        :mod:`depcache_celery.worker.logfields`)."""
        return fields(
            event_ids=self.event_ids,
            routing_keys=self.routing_keys,
            dependency_count=len(self.dependencies),
            duration=time.perf_counter() - self.started,
            **more,
        )


def _routing_key(message: Message) -> str | None:
    key = (message.delivery_info or {}).get("routing_key")
    return key if isinstance(key, str) else None


def _body(message: Message) -> bytes | str:
    body: Any = message.body
    if isinstance(body, (bytes, str)):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    return str(body)


class BatchProcessor:
    """Turns batches of bus messages into invalidations (see the module's docstring).

    Args:
        router: maps events to dependencies.
        dead_letter: publishes one dead letter (an :func:`deadletter.envelope`); raises when it
            could not.
        hand_off: hands ``(dependencies, manager names)`` to the retry path; raises when it
            could not.
        max_message_bytes: larger bodies are dead-lettered.
        apply: the fan-out :meth:`process` uses (default
            :func:`depcache_celery.worker.fanout.apply`).
        ack_many: acknowledges a finished batch's messages at once (e.g. one AMQP
            ``basic.ack`` with ``multiple``) and returns how many; raises when it could not.
            None: one acknowledgement per message.
    """

    def __init__(
        self,
        *,
        router: Router | Callable[[], Router],
        dead_letter: DeadLetterFn,
        hand_off: HandOffFn,
        max_message_bytes: int,
        apply: ApplyFn = apply,
        counters: Stats = stats,
        ack_many: AckManyFn | None = None,
    ) -> None:
        self._ack_many = ack_many
        #: for the spans' messaging attributes: the queue consumed, and the broker's kind
        self.destination = ""
        self.system = ""
        self._router = router
        self._dead_letter = dead_letter
        self._hand_off = hand_off
        self._max_bytes = max_message_bytes
        self._apply = apply
        self._stats = counters
        metrics.prepare()  # now, not while a message is processed

    @property
    def router(self) -> Router:
        """The router in use (resolved on each batch when given as a callable)."""
        return self._router if isinstance(self._router, Router) else self._router()

    def process(self, messages: Sequence[Message]) -> BatchOutcome:
        """Handle one batch in this thread; never raises (see the module's docstring)."""
        batch = self.prepare(messages)
        if not batch.messages:
            return batch.outcome
        report: FanoutReport | None = None
        if batch.dependencies:
            try:
                started = time.perf_counter()
                report = self._apply(batch.dependencies)
                for name in report.removed:
                    metrics.observe_apply(name, time.perf_counter() - started)
                    metrics.observe_invalidated(name, batch.published_at)
            except Exception as exc:  # a bug of ours: never let it stop the consumer
                logger.exception("depcache_celery: batch of %d message(s) failed", len(messages))
                for message in batch.messages:
                    self._reject(message, f"internal error: {exc!r}", batch.outcome)
                return batch.outcome
        return self.finish(batch, report)

    def prepare(self, messages: Sequence[Message]) -> Batch:
        """Route a batch's messages: dead-letter (and acknowledge) those that are malformed or
        cannot be routed; the others, and their dependencies, are the returned :class:`Batch`.
        Never raises."""
        outcome = BatchOutcome(received=len(messages))
        batch = Batch([], [], outcome)
        if not messages:
            return batch
        self._stats.add("batches")
        handled = 0  # messages[handled:] are neither in the batch nor dead-lettered yet
        try:
            per_message: list[list[str]] = []
            router = self.router
            debug = logger.isEnabledFor(logging.DEBUG)
            for message in messages:
                routed = self._route(router, message, outcome, debug=debug)
                handled += 1
                if routed is None:
                    continue
                deps, event_id = routed
                batch.messages.append(message)
                batch.event_ids.append(event_id)
                batch.routing_keys.append(_routing_key(message))
                batch.published_at.append(published_at(message))
                per_message.append(deps)
            batch.dependencies = unique(dep for deps in per_message for dep in deps)
            outcome.dependencies = batch.dependencies
        except Exception as exc:  # a bug of ours: never let it stop the consumer
            logger.exception("depcache_celery: batch of %d message(s) failed", len(messages))
            for message in [*batch.messages, *messages[handled:]]:
                self._reject(message, f"internal error: {exc!r}", outcome)
            batch.messages = []
            batch.dependencies = outcome.dependencies = []
        if tracing.enabled() and batch.messages:
            self._start_span(batch)
        return batch

    def _start_span(self, batch: Batch) -> None:
        contexts = [tracing.extract(message.headers) for message in batch.messages]
        carried = [c for c in contexts if c is not None]
        ids = [i for i in batch.event_ids if i is not None]
        attributes: dict[str, Any] = {
            "messaging.system": self.system,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": self.destination,
            "messaging.batch.message_count": len(batch.messages),
            "depcache.event_ids": ids,
            "depcache.dependencies.count": len(batch.dependencies),
        }
        if len(batch.messages) == 1:
            attributes["messaging.message.id"] = ids[0] if ids else ""
            attributes["messaging.rabbitmq.destination.routing_key"] = batch.routing_keys[0] or ""
        batch.span = tracing.start(
            f"process {self.destination}".strip(),
            "CONSUMER",
            attributes,
            parent=carried[0] if carried else None,
            links=carried,
        )

    def finish(self, batch: Batch, report: FanoutReport | None) -> BatchOutcome:
        """Count what ``report`` (the batch's dependencies applied on the managers; None when
        there were none) says, hand the failed managers' share to the retry path, then
        acknowledge the batch's messages (or leave them unacknowledged when the hand-off
        failed). Never raises."""
        outcome = batch.outcome
        try:
            if self._settle(batch, report):
                self._ack_all(batch.messages, outcome)
            else:
                outcome.unacked += len(batch.messages)  # left unacknowledged on purpose
        except Exception as exc:  # a bug of ours: never let it stop the consumer
            logger.exception("depcache_celery: batch of %d message(s) failed", len(batch.messages))
            for message in batch.messages:
                self._reject(message, f"internal error: {exc!r}", outcome)
            tracing.end(batch.span, error=f"internal error: {exc!r}")
            return outcome
        self._log_batch(batch, outcome)
        return outcome

    @staticmethod
    def _log_batch(batch: Batch, outcome: BatchOutcome) -> None:
        """One line per batch; a batch applied everywhere is visible at INFO."""
        metrics.observe_batch(time.perf_counter() - batch.started)
        report = outcome.report
        removed = dict(report.removed) if report is not None else {}
        failed = report.failed if report is not None else []
        result = (
            "handed off" if outcome.handed_off else ("unacked" if outcome.unacked else "applied")
        )
        level = logging.WARNING if failed or outcome.unacked else logging.INFO
        if logger.isEnabledFor(level):  # the fields list every event: built only when logged
            extra = batch.log_fields(
                managers=[*removed, *failed],
                removed=removed,
                failed=failed,
                acked=outcome.acked,
                unacked=outcome.unacked,
                dead_lettered=outcome.dead_lettered,
                outcome=result,
            )
            logger.log(
                level,
                "depcache_celery: batch of %d event(s) %s: %d dependencies on %s in %.1f ms "
                "(%d entries removed%s)",
                len(batch.messages),
                ", ".join(str(i) for i in batch.event_ids[:5])
                + (", ..." if len(batch.event_ids) > 5 else ""),
                len(batch.dependencies),
                ", ".join(sorted(removed)) or "no manager",
                extra["duration_ms"],
                sum(removed.values()),
                f"; failed on {', '.join(failed)}, handed to the retry path" if failed else "",
                extra=extra,
            )
        if batch.span is not None:
            tracing.end(
                batch.span,
                {
                    "depcache.managers": sorted([*removed, *failed]),
                    "depcache.removed": sum(removed.values()),
                    "depcache.failed": failed,
                    "depcache.outcome": result,
                },
                error=f"failed on {', '.join(failed)}" if failed else None,
            )

    # -- steps -------------------------------------------------------------------------------------
    def _route(
        self, router: Router, message: Message, outcome: BatchOutcome, *, debug: bool = True
    ) -> tuple[list[str], str | None] | None:
        """The message's dependencies and event id, or None when it was dead-lettered (or
        left unacked)."""
        event_id: str | None = None
        try:
            parsed = parse_message(_body(message), max_bytes=self._max_bytes)
            event_id = parsed.id
            self._stats.add("events")
            deps = router.dependencies_for(parsed.event, parsed.data, parsed.dependencies)
        except (BadMessage, EventError) as exc:
            self._reject(message, str(exc), outcome, event_id)
            return None
        if not deps:
            self._stats.add("unhandled_events")
        if debug:  # the caller checked the level once per batch
            logger.debug(
                "depcache_celery: event %r (id %s) -> %d dependencies",
                parsed.event,
                parsed.id,
                len(deps),
            )
        return deps, parsed.id

    def _settle(self, batch: Batch, report: FanoutReport | None) -> bool:
        """Count the batch's invalidation; True when its messages can be acknowledged."""
        outcome = batch.outcome
        if not batch.dependencies:
            return True
        report = report if report is not None else FanoutReport(batch.dependencies)
        outcome.report = report
        self._stats.add("dependencies", len(batch.dependencies))
        self._stats.add("entries_removed", report.total)
        if not report.removed and not report.errors:
            logger.warning(
                "depcache_celery: no cache manager is registered: %d dependencies not invalidated",
                len(batch.dependencies),
            )
        if not report.errors:
            return True
        failed = report.failed
        for name in failed:
            self._stats.target_failed(name)
            logger.warning(
                "depcache_celery: invalidation failed on manager %r: %s",
                name,
                report.errors[name],
                extra=batch.log_fields(managers=[name], outcome="failed"),
            )
        try:
            self._hand_off(batch.dependencies, failed)
        except Exception:
            logger.exception(
                "depcache_celery: could not hand the share of %s to the retry path; the batch "
                "stays unacknowledged and will be redelivered",
                failed,
                extra=batch.log_fields(managers=failed, outcome="unacked"),
            )
            return False
        logger.warning(
            "depcache_celery: handed the share of %s to the retry path",
            ", ".join(failed),
            extra=batch.log_fields(managers=failed, outcome="retry", attempt=1),
        )
        self._stats.add("retries")
        outcome.handed_off = failed
        return True

    def _reject(
        self,
        message: Message,
        reason: str,
        outcome: BatchOutcome,
        event_id: str | None = None,
    ) -> None:
        """Dead-letter ``message`` with ``reason`` and acknowledge it (or leave it unacked)."""
        extra = fields(
            event_ids=[event_id],
            routing_keys=[_routing_key(message)],
            kind="malformed",
            reason=reason,
        )
        letter = deadletter.envelope(
            "malformed",
            reason,
            _body(message),
            delivery_info=message.delivery_info,
            content_type=message.content_type,
            headers=message.headers,
        )
        try:
            self._dead_letter(letter)
        except Exception:
            logger.exception(
                "depcache_celery: could not dead-letter a message (%s); it stays unacknowledged",
                reason,
                extra={**extra, "outcome": "unacked"},
            )
            outcome.unacked += 1
            return
        logger.warning(
            "depcache_celery: dead-lettered a message: %s",
            reason,
            extra={**extra, "outcome": "dead-lettered"},
        )
        self._stats.dead_letter("malformed")
        outcome.dead_lettered += 1
        self._ack(message, outcome)

    def _ack_all(self, messages: Sequence[Message], outcome: BatchOutcome) -> None:
        if self._ack_many is None or len(messages) < 2:
            for message in messages:
                self._ack(message, outcome)
            return
        try:
            outcome.acked += self._ack_many(messages)
        except Exception:  # channel gone: the broker redelivers them, which is harmless
            logger.exception("depcache_celery: could not acknowledge a batch")
            outcome.unacked += len(messages)

    def _ack(self, message: Message, outcome: BatchOutcome) -> None:
        try:
            message.ack()
        except Exception:  # channel gone: the broker redelivers it, which is harmless
            logger.exception("depcache_celery: could not acknowledge a message")
            outcome.unacked += 1
            return
        outcome.acked += 1


# --- applying batches off the consumer thread -----------------------------------------------------


def _apply_one(dependencies: list[str], manager: str) -> FanoutReport:
    return apply_one(dependencies, manager)


_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()
"""A lane's share span while tracing is off (what :func:`tracing.span` yields then, for less)."""


class Job:
    """One batch handed to :class:`Lanes`: its report fills in as each manager's lane applies
    it; ``remaining`` are the managers that have not yet."""

    def __init__(
        self,
        dependencies: list[str],
        targets: Iterable[str],
        payload: Any = None,
        batch: Batch | None = None,
    ) -> None:
        self.dependencies = dependencies
        self.remaining = set(targets)
        self.report = FanoutReport(list(dependencies))
        self.payload = payload
        self.batch = batch

    @property
    def done(self) -> bool:
        """True once every manager's lane applied the job."""
        return not self.remaining


LANE_IDLE_SECONDS = 10.0
"""How long a lane's thread waits for more work once idle before it ends (a later job starts
another): a steady stream of batches reuses one thread per manager instead of starting one per
batch."""


class _Lane:
    def __init__(self, name: str, lock: threading.Lock) -> None:
        self.name = name
        self.pending: list[Job] = []
        self.busy = False  # it has jobs to apply (or is applying them)
        self.alive = False  # a thread serves it (busy, or waiting for jobs)
        self.work = threading.Condition(lock)  # notified when a job is queued on it


class Lanes:
    """Applies jobs on their managers, one thread per manager at a time, kept while jobs keep
    coming (see the module's docstring).

    Args:
        on_done: called with each job once every one of its managers applied it (or failed),
            in the lane's thread; it must be quick and thread-safe.
        on_idle: called, in the lane's thread, each time a lane has applied what it had (also
            quick and thread-safe).
        apply_one: applies ``(dependencies, manager name)`` on that manager (default
            :func:`depcache_celery.worker.fanout.apply` for that name).
    """

    def __init__(
        self,
        on_done: Callable[[Job], None],
        *,
        on_idle: Callable[[], None] | None = None,
        apply_one: ApplyOneFn = _apply_one,
    ) -> None:
        self._on_done = on_done
        self._on_idle = on_idle
        self._apply_one = apply_one
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}

    def submit(self, job: Job) -> None:
        """Queue ``job`` on the lane of each of its managers; a lane whose thread waits is woken,
        a lane without one starts a thread. A job without managers is done at once."""
        if not job.remaining:
            self._on_done(job)
            return
        start: list[_Lane] = []
        with self._lock:
            for name in sorted(job.remaining):
                lane = self._lanes.get(name)
                if lane is None:
                    lane = self._lanes[name] = _Lane(name, self._lock)
                lane.pending.append(job)
                if not lane.busy:
                    lane.busy = True
                    if lane.alive:
                        lane.work.notify()
                    else:
                        lane.alive = True
                        start.append(lane)
        for lane in start:
            threading.Thread(
                target=self._run, args=(lane,), name=f"depcache-lane-{lane.name}", daemon=True
            ).start()

    def idle(self, names: Iterable[str]) -> bool:
        """True when the lane of one of ``names`` (or of every one, when there are none) has
        nothing to apply: a job submitted now would start at once there."""
        with self._lock:
            wanted = list(names)
            if not wanted:
                return True
            return any(name not in self._lanes or not self._lanes[name].busy for name in wanted)

    def busy(self) -> list[str]:
        """The managers whose lanes are applying jobs, sorted."""
        with self._lock:
            return sorted(name for name, lane in self._lanes.items() if lane.busy)

    def _run(self, lane: _Lane) -> None:
        """A lane's thread: apply its jobs; once it has none, signal ``on_idle`` and wait up to
        :data:`LANE_IDLE_SECONDS` for more before ending.

        The lanes share one lock (a job's report is filled in by all its lanes): a lane takes it
        once per round of jobs (to hand their results back and take the next ones) and once to
        wait, so that lanes woken together by one job contend for it as little as possible."""
        with self._lock:
            jobs, lane.pending = lane.pending, []
            if not jobs:
                lane.busy = False
        while True:
            while jobs:
                jobs = self._apply(lane, jobs)
            if self._on_idle is not None:
                try:
                    self._on_idle()
                except Exception:
                    logger.exception("depcache_celery: the lane of %r could not signal", lane.name)
            with self._lock:
                if not lane.work.wait_for(lambda: bool(lane.pending), LANE_IDLE_SECONDS):
                    lane.alive = False
                    return
                jobs, lane.pending = lane.pending, []

    def _apply(self, lane: _Lane, jobs: list[Job]) -> list[Job]:
        """Apply ``jobs`` on the lane's manager and hand their results back; return the jobs
        queued on the lane meanwhile (none: the lane is no longer busy)."""
        name = lane.name
        deps = unique(dep for job in jobs for dep in job.dependencies)
        removed = 0
        error: Exception | None = None
        started = time.perf_counter()
        batches = [job.batch for job in jobs if job.batch is not None]
        # per-event lists are built only for the span and the debug line that read them
        traced = tracing.enabled()
        spans = [tracing.context_of(b.span) for b in batches if b.span is not None]
        with (
            tracing.span(
                f"depcache.share {name}",
                "INTERNAL",
                {
                    "depcache.manager": name,
                    "depcache.dependencies.count": len(deps),
                    "depcache.event_ids": [i for b in batches for i in b.event_ids if i],
                },
                parent=spans[0] if spans else None,
                links=spans[1:],
            )
            if traced
            else _NO_SPAN
        ) as share:
            try:
                report = self._apply_one(deps, name)
                removed = report.removed.get(name, 0)
                error = report.errors.get(name)
            except Exception as exc:  # a bug of ours: report it as this manager's failure
                logger.exception("depcache_celery: applying a batch on %r failed", name)
                error = exc
            if error is not None:
                tracing.fail(share, error)
            elif share is not None:
                share.set_attribute("depcache.removed", removed)
        metrics.observe_apply(name, time.perf_counter() - started)
        if error is None:
            metrics.observe_invalidated(name, [p for batch in batches for p in batch.published_at])
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "depcache_celery: %d dependencies on %s: %s",
                len(deps),
                name,
                f"failed: {error}" if error is not None else f"{removed} entries removed",
                extra=fields(
                    event_ids=[i for batch in batches for i in batch.event_ids],
                    routing_keys=[k for batch in batches for k in batch.routing_keys],
                    dependency_count=len(deps),
                    managers=[name],
                    duration=time.perf_counter() - started,
                    removed={name: removed} if error is None else {},
                    failed=[name] if error is not None else [],
                    outcome="failed" if error is not None else "applied",
                ),
            )
        finished: list[Job] = []
        with self._lock:
            for index, job in enumerate(jobs):
                if error is not None:
                    job.report.errors[name] = error
                else:  # what one invalidation of the union removed, counted once
                    job.report.removed[name] = removed if index == 0 else 0
                job.remaining.discard(name)
                if not job.remaining:
                    finished.append(job)
            more, lane.pending = lane.pending, []
            if not more:
                lane.busy = False
        for job in finished:
            try:
                self._on_done(job)
            except Exception:
                logger.exception("depcache_celery: could not hand back a finished batch")
        return more
