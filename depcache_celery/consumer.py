"""The bus consumer: a Celery consumer step reading domain events from a durable topic exchange.

``install(app)`` adds it to the worker. In the worker's consumer thread it declares

- the durable topic exchange ``depcache_exchange``,
- the durable queue ``depcache_queue``, bound to it with each of ``depcache_binding_keys``,
- the durable dead-letter queue ``depcache_dead_letter_queue``,

and consumes the queue with manual acknowledgements, at most ``depcache_prefetch_count``
messages unacknowledged. Messages that arrive together (everything the event loop delivered
before it next turns, or within ``depcache_batch_window`` seconds of the first) form one batch,
handled by :class:`~depcache_celery.batch.BatchProcessor`: one invalidation of the batch's
de-duplicated dependencies on every manager.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

from celery import Celery, bootsteps
from kombu import Consumer, Exchange, Producer, Queue, binding
from kombu.message import Message

from . import deadletter
from .batch import BatchProcessor
from .events import Router, default_router
from .settings import Settings
from .tasks import hand_off

__all__ = ["EventConsumerStep", "event_exchange", "event_queue"]

logger = logging.getLogger(__name__)


def event_exchange(settings: Settings) -> Exchange:
    """The durable topic exchange producers publish events to."""
    return Exchange(settings.exchange, type="topic", durable=True, auto_delete=False)


def event_queue(settings: Settings) -> Queue:
    """The worker's durable queue, bound to :func:`event_exchange` with every binding key."""
    exchange = event_exchange(settings)
    return Queue(
        settings.queue,
        bindings=[binding(exchange, routing_key=key) for key in settings.binding_keys],
        durable=True,
        auto_delete=False,
    )


class EventConsumerStep(bootsteps.ConsumerStep):
    """Consumes the event queue in the worker (see the module's docstring).

    ``router`` is the :class:`Router` to use; None means :data:`default_router` at the time of
    each batch. ``install(app, router=...)`` makes a subclass with it set.
    """

    router: ClassVar[Router | None] = None

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.app: Celery = parent.app
        self.settings = Settings.from_conf(self.app.conf)
        self._parent: Any = None
        self._buffer: list[Message] = []
        self._flush_scheduled = False
        self._producer: Producer | None = None
        self.processor = BatchProcessor(
            router=self._current_router,
            dead_letter=self._publish_dead_letter,
            hand_off=self._hand_off,
            max_message_bytes=self.settings.max_message_bytes,
        )

    def _current_router(self) -> Router:
        return type(self).router or default_router

    # -- bootstep protocol -----------------------------------------------------------------------
    def start(self, c: Any) -> None:
        self._parent = c
        super().start(c)

    def stop(self, c: Any) -> None:
        self._flush()
        super().stop(c)

    def shutdown(self, c: Any) -> None:
        self._flush()
        super().shutdown(c)

    def get_consumers(self, channel: Any) -> list[Consumer]:
        self._buffer = []
        self._flush_scheduled = False
        queue = event_queue(self.settings)
        deadletter.dead_letter_queue(self.settings.dead_letter_queue)(channel).declare()
        self._producer = Producer(channel)
        consumer = Consumer(
            channel,
            queues=[queue],
            on_message=self._on_message,
            prefetch_count=self.settings.prefetch_count,
            auto_declare=True,
        )
        logger.info(
            "depcache_celery: consuming events from queue %r (exchange %r, keys %s)",
            self.settings.queue,
            self.settings.exchange,
            ", ".join(self.settings.binding_keys),
        )
        return [consumer]

    # -- messages ----------------------------------------------------------------------------------
    def _on_message(self, message: Message) -> None:
        """Buffer the message; the batch is handled once the event loop has delivered all that
        arrived together."""
        try:
            self._buffer.append(message)
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
            parent = self._parent
            hub = getattr(parent, "hub", None) if parent is not None else None
            if hub is not None and self.settings.batch_window > 0:
                hub.call_later(self.settings.batch_window, self._flush)
            elif hub is not None:
                hub.call_soon(self._flush)
            else:  # no event loop (e.g. a green pool): handle it now
                self._flush()
        except Exception:  # never let an exception reach kombu (see batch.py)
            logger.exception("depcache_celery: could not handle a message")

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        started = time.perf_counter()
        try:
            outcome = self.processor.process(batch)
        except Exception:  # process() does not raise; this guards the event loop regardless
            logger.exception("depcache_celery: batch of %d message(s) failed", len(batch))
            return
        logger.debug(
            "depcache_celery: batch of %d message(s): %d dependencies, %d acked, "
            "%d dead-lettered, %d unacked, %.1f ms",
            outcome.received,
            len(outcome.dependencies),
            outcome.acked,
            outcome.dead_lettered,
            outcome.unacked,
            (time.perf_counter() - started) * 1000,
        )

    def _publish_dead_letter(self, letter: dict[str, Any]) -> None:
        if self._producer is None:
            raise RuntimeError("the event consumer has no channel")
        letter.setdefault("queue", self.settings.queue)
        deadletter.publish(self._producer, self.settings.dead_letter_queue, letter)

    def _hand_off(self, dependencies: list[str], managers: list[str]) -> None:
        hand_off(self.app, dependencies, managers, settings=self.settings)
