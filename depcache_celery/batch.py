"""One batch of bus messages: parse, route, one invalidation for all, then acknowledge.

A batch maps to one :func:`depcache_celery.fanout.apply` call with the union of its messages'
dependencies, de-duplicated. Per message:

- malformed (see :mod:`depcache_celery.messages`) or not routable (:class:`EventError`): published
  to the dead-letter queue with the reason, then acknowledged;
- valid: acknowledged once every manager applied the batch, or once the share of the managers
  that failed has been handed to the retry path (the ``depcache.invalidate`` task, with those
  managers' names, retried with backoff). If even that hand-off fails, the messages stay
  unacknowledged, so the broker redelivers them when the channel closes.

Nothing raises out of :meth:`BatchProcessor.process`: on the Redis transport an exception
escaping a consumer callback stops the worker consuming.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kombu.message import Message

from . import deadletter
from .counters import Stats, stats
from .events import EventError, Router
from .fanout import FanoutReport, apply, unique
from .messages import BadMessage, parse_message

__all__ = ["BatchOutcome", "BatchProcessor"]

logger = logging.getLogger(__name__)

DeadLetterFn = Callable[[dict[str, Any]], None]
HandOffFn = Callable[[list[str], list[str]], None]
ApplyFn = Callable[[Iterable[str]], FanoutReport]


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
        apply: the fan-out (default :func:`depcache_celery.fanout.apply`).
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
    ) -> None:
        self._router = router
        self._dead_letter = dead_letter
        self._hand_off = hand_off
        self._max_bytes = max_message_bytes
        self._apply = apply
        self._stats = counters

    @property
    def router(self) -> Router:
        """The router in use (resolved on each batch when given as a callable)."""
        return self._router if isinstance(self._router, Router) else self._router()

    def process(self, messages: Sequence[Message]) -> BatchOutcome:
        """Handle one batch; never raises (see the module's docstring)."""
        outcome = BatchOutcome(received=len(messages))
        if not messages:
            return outcome
        self._stats.add("batches")
        pending = list(messages)
        try:
            valid: list[Message] = []
            per_message: list[list[str]] = []
            router = self.router
            for message in messages:
                deps = self._route(router, message, outcome)
                if deps is None:
                    pending.remove(message)
                    continue
                valid.append(message)
                per_message.append(deps)
            outcome.dependencies = unique(dep for deps in per_message for dep in deps)
            if self._invalidate(outcome):
                for message in valid:
                    self._ack(message, outcome)
                    pending.remove(message)
            else:
                pending = []  # left unacknowledged on purpose
                outcome.unacked += len(valid)
        except Exception as exc:  # a bug of ours: never let it stop the consumer
            logger.exception("depcache_celery: batch of %d message(s) failed", len(messages))
            for message in pending:
                self._reject(message, f"internal error: {exc!r}", outcome)
        return outcome

    # -- steps -------------------------------------------------------------------------------------
    def _route(self, router: Router, message: Message, outcome: BatchOutcome) -> list[str] | None:
        """The message's dependencies, or None when it was dead-lettered (or left unacked)."""
        try:
            parsed = parse_message(_body(message), max_bytes=self._max_bytes)
            self._stats.add("events")
            deps = router.dependencies_for(parsed.event, parsed.data, parsed.dependencies)
        except (BadMessage, EventError) as exc:
            self._reject(message, str(exc), outcome)
            return None
        if not deps:
            self._stats.add("unhandled_events")
        logger.debug(
            "depcache_celery: event %r (id %s) -> %d dependencies",
            parsed.event,
            parsed.id,
            len(deps),
        )
        return deps

    def _invalidate(self, outcome: BatchOutcome) -> bool:
        """Apply the batch's dependencies; True when its messages can be acknowledged."""
        if not outcome.dependencies:
            return True
        report = self._apply(outcome.dependencies)
        outcome.report = report
        self._stats.add("dependencies", len(outcome.dependencies))
        self._stats.add("entries_removed", report.total)
        if not report.removed and not report.errors:
            logger.warning(
                "depcache_celery: no cache manager is registered: %d dependencies not invalidated",
                len(outcome.dependencies),
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
            )
        try:
            self._hand_off(outcome.dependencies, failed)
        except Exception:
            logger.exception(
                "depcache_celery: could not hand the share of %s to the retry path; the batch "
                "stays unacknowledged and will be redelivered",
                failed,
            )
            return False
        self._stats.add("retries")
        outcome.handed_off = failed
        return True

    def _reject(self, message: Message, reason: str, outcome: BatchOutcome) -> None:
        """Dead-letter ``message`` with ``reason`` and acknowledge it (or leave it unacked)."""
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
            )
            outcome.unacked += 1
            return
        logger.warning("depcache_celery: dead-lettered a message: %s", reason)
        self._stats.dead_letter("malformed")
        outcome.dead_lettered += 1
        self._ack(message, outcome)

    def _ack(self, message: Message, outcome: BatchOutcome) -> None:
        try:
            message.ack()
        except Exception:  # channel gone: the broker redelivers it, which is harmless
            logger.exception("depcache_celery: could not acknowledge a message")
            outcome.unacked += 1
            return
        outcome.acked += 1
