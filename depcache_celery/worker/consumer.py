"""The bus consumer: a Celery consumer step reading domain events from a durable topic exchange.

``install(app)`` adds it to the worker. In the worker's consumer thread it declares

- the durable topic exchange ``depcache_exchange``,
- the durable queue ``depcache_queue``, bound to it with each of ``depcache_binding_keys``,
- the durable dead-letter queue ``depcache_dead_letter_queue``,

and consumes the queue with manual acknowledgements, at most ``depcache_prefetch_count``
messages unacknowledged (which bounds the work in flight). Messages form batches, each handled
as one invalidation of its de-duplicated dependencies on every manager (see
:mod:`depcache_celery.worker.batch`):

- Messages that arrive together form one batch: everything the event loop delivered before it
  next turns, or within ``depcache_batch_window`` seconds of the first (by default 10 ms on a
  Redis broker, whose transport delivers one message per event-loop turn, and 0 elsewhere: see
  :mod:`depcache_celery.settings`). Without a window, messages that keep streaming in (the
  first of a batch within 2 ms of the previous batch's hand-off) are gathered for 2 ms, so a
  backlog drains in batches of about a hundred; an event after a quiet gap is not held.
- The invalidation runs off the consumer thread, in one lane (thread) per manager
  (:class:`~depcache_celery.worker.batch.Lanes`): a manager that hangs (a server that accepts
  connections but never answers) holds up neither consuming, nor the worker's heartbeats, nor
  the other managers. While a batch is being applied, the messages that arrive wait and join
  the next batch, handed to the lanes once one of its managers' lanes is free: batches grow
  when the managers are slower than the broker delivers. A lane still busy with earlier
  batches applies all those that queued for it in one invalidation once it is free.
- Routing, dead letters and acknowledgements stay in the consumer thread (kombu channels are not
  thread-safe): a batch's messages are acknowledged there once every manager's lane applied it,
  or once the failed managers' share was handed to the retry path. A manager that hangs thus
  holds up the acknowledgement of the batches it has not applied, until its client's socket
  timeout makes it fail (set ``socket_timeout`` on the managers' configurations) or until
  ``depcache_prefetch_count`` messages are unacknowledged and the broker stops delivering.
- The lanes hand finished batches back through the event loop: kombu's thread-safe
  ``Hub.call_soon`` wakes the loop where kombu's hub has it (kombu 5.7 does); a timer checks
  for them too (every 50 ms with an older hub, every second otherwise). The retry path's
  ``depcache.invalidate`` tasks run in the worker's pool like any task (with the solo pool, in
  the consumer thread: a hung manager holds it up there until its socket timeout).
- When the consumer stops (worker shutdown, or a lost broker connection), it hands the batch
  being gathered to the lanes and waits up to ``depcache_shutdown_timeout`` seconds for the
  batches in flight, acknowledging those that finish; the others stay unacknowledged and the
  broker delivers them again (at least once).

Without an event loop (a green pool, or a transport without one), each message is handled at
once in the consumer thread by :meth:`~depcache_celery.worker.batch.BatchProcessor.process`.

What is decided here (when a batch is due, which batches are in flight on which channel, when
one multiple ack may settle a batch) is kept by a :class:`~depcache_celery.worker.ledger.Ledger`,
without kombu; this module wires it to the channel, the event loop and the lanes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from celery import Celery, bootsteps
from kombu import Consumer, Producer
from kombu.message import Message

import depcache

from .. import tracing
from ..bus import event_queue
from ..settings import Settings
from . import deadletter
from .batch import Batch, BatchProcessor, Job, Lanes
from .ledger import Ledger
from .router import Router, default_router
from .tasks import hand_off

__all__ = ["EventConsumerStep", "ack_batch"]

logger = logging.getLogger(__name__)

# How often a timer looks for batches the lanes finished: often where the lanes cannot wake the
# event loop themselves, as a safety net where they can.
_POLL_INTERVAL = 0.05
_SAFETY_INTERVAL = 1.0
# Without a batch window, a batch whose first message comes within this long of the previous
# batch's hand-off (messages streaming in, e.g. a backlog) gathers this long: batches of ~100
# instead of ~25 when the lanes are fast, at a quarter less CPU per event; an event arriving
# after a longer gap is not held (see Ledger's ``stream``).
_STREAM_WINDOW = 0.002


def ack_batch(ledger: Ledger[Message], messages: Sequence[Message]) -> int:
    """Acknowledge a finished batch: with one ``basic.ack(multiple=True)`` up to its highest
    delivery tag when the ledger says that settles exactly these messages (AMQP: every message
    delivered before that one on this channel is settled), else one by one. Returns how many
    were acknowledged; raises when the channel failed."""
    top = ledger.multiple_ack_tag(messages)
    channel: Any = messages[0].channel if messages else None
    if top is not None and channel is not None:
        channel.basic_ack(top, multiple=True)
        for message in messages:
            setattr(message, "_state", "ACK")  # as Message.ack() records it  # noqa: B010
    else:
        for message in messages:
            message.ack()
    if ledger.multi_ack:
        ledger.prune()
    return len(messages)


def _threadsafe_call_soon(hub: Any) -> bool:
    """True when ``hub.call_soon`` may be called from another thread (kombu 5.7 and later
    guard its ready set with a lock and wake the poller)."""
    return getattr(hub, "_ready_lock", None) is not None and hasattr(hub, "_waker")


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
        self._hub: Any = None
        self._hub_threadsafe = False
        self._timer_entry: Any = None
        self._producer: Producer | None = None
        # The consumer thread's state (the lock only guards against a stop from another thread).
        self._lock = threading.RLock()
        self.ledger: Ledger[Message] = Ledger(stream=_STREAM_WINDOW)
        self._finishing: Batch | None = None
        # Shared with the lanes' threads.
        self._done: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._wake_lock = threading.Lock()
        self._wake_pending = False
        self.processor = BatchProcessor(
            router=self._current_router,
            dead_letter=self._publish_dead_letter,
            hand_off=self._hand_off,
            max_message_bytes=self.settings.max_message_bytes,
            ack_many=self._ack_batch,
        )
        self.lanes = Lanes(self._on_job_done, on_idle=self._on_lane_idle)

    def _current_router(self) -> Router:
        return type(self).router or default_router

    # -- bootstep protocol -----------------------------------------------------------------------
    def start(self, c: Any) -> None:
        hub = getattr(c, "hub", None)
        self._hub = hub
        self._hub_threadsafe = hub is not None and _threadsafe_call_soon(hub)
        transport = getattr(getattr(c, "connection", None), "transport", None)
        driver = str(getattr(transport, "driver_type", ""))
        with self._lock:
            self.ledger.window = self.settings.batch_window_for(driver)
            self.ledger.multi_ack = driver == "amqp" and hub is not None  # one basic.ack a batch
        self.processor.system = tracing.messaging_system(driver)
        self.processor.destination = self.settings.queue
        super().start(c)
        if hub is not None:
            interval = _SAFETY_INTERVAL if self._hub_threadsafe else _POLL_INTERVAL
            self._timer_entry = hub.call_repeatedly(interval, self._pump)

    def stop(self, c: Any) -> None:
        self._wind_down()
        super().stop(c)

    def shutdown(self, c: Any) -> None:
        self._wind_down()
        super().shutdown(c)

    def get_consumers(self, channel: Any) -> list[Consumer]:
        with self._lock:
            self.ledger.new_channel()
        queue_ = event_queue(self.settings)
        deadletter.dead_letter_queue(self.settings.dead_letter_queue)(channel).declare()
        self._producer = Producer(channel)
        consumer = Consumer(
            channel,
            queues=[queue_],
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
        """Buffer the message; the batch is handed to the lanes once the event loop has
        delivered all that arrived together (or the batch window ended) and a lane is free."""
        try:
            hub = self._hub
            if hub is None:  # no event loop (e.g. a green pool): handle it now
                self._process_now([message])
                return
            with self._lock:
                window = self.ledger.add(message)
            if window is None:  # the batch was gathering already
                return
            if window > 0:
                hub.call_later(window, self._pump)
            else:
                hub.call_soon(self._pump)
        except Exception:  # never let an exception reach kombu (see batch.py)
            logger.exception("depcache_celery: could not handle a message")

    def _pump(self) -> None:
        """In the consumer thread: finish the batches the lanes applied, and hand the buffer to
        the lanes when it is due."""
        with self._wake_lock:
            self._wake_pending = False
        try:
            with self._lock:
                self._finish_done()
                if self._dispatch():
                    self._finish_done()
        except Exception:  # never let an exception reach the event loop
            logger.exception("depcache_celery: could not handle the batches")

    def _wake(self) -> None:
        """From a lane's thread: have the consumer thread run :meth:`_pump` soon."""
        hub = self._hub
        if hub is None or not self._hub_threadsafe:
            return  # the timer will
        with self._wake_lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        hub.call_soon(self._pump)

    def _on_lane_idle(self) -> None:
        """From a lane's thread, once it applied what it had: wake the consumer thread only
        when a batch is gathering (it may have waited for a free lane). Each lane becomes idle
        once per share: waking the consumer every time (20 times per event with 20 managers)
        ran :meth:`_pump` for nothing. The length is read without the consumer's lock: the
        lane marked itself idle first, so a batch that :meth:`_dispatch` held back for want of
        a free lane is seen here (it stays in the ledger until a dispatch takes it)."""
        if self.ledger.gathering:
            self._wake()

    def _on_job_done(self, job: Job) -> None:
        self._done.put(job)
        self._wake()

    # -- batches (consumer thread, under self._lock) -----------------------------------------------
    def _dispatch(self, *, force: bool = False) -> bool:
        """Hand the gathered batch to the lanes when it is due (``force``: now); True when it
        did."""
        messages = self.ledger.take(lambda: self.lanes.idle(self._targets()), force=force)
        if messages is None:
            return False
        batch = self.processor.prepare(messages)
        if not batch.messages:
            return False
        targets = self._targets() if batch.dependencies else []
        job = Job(batch.dependencies, targets, payload=(self.ledger.launched(), batch), batch=batch)
        self.lanes.submit(job)
        return True

    def _finish_done(self) -> None:
        while True:
            try:
                job = self._done.get_nowait()
            except queue.Empty:
                return
            self._finish(job)

    def _finish(self, job: Job) -> None:
        generation, batch = job.payload
        assert isinstance(batch, Batch)
        if not self.ledger.landed(generation):
            logger.info(
                "depcache_celery: a batch of %d message(s) of a closed channel was applied; "
                "the broker delivers it again",
                len(batch.messages),
            )
            return
        self._finishing = batch  # whose event ids follow a hand-off to the retry path
        try:
            self.processor.finish(batch, job.report)  # logs the batch's line
        finally:
            self._finishing = None

    def _wind_down(self) -> None:
        """Hand the buffer to the lanes, then wait up to ``depcache_shutdown_timeout`` for the
        batches in flight and finish them; forget the rest (left unacknowledged)."""
        with self._lock:
            entry, self._timer_entry = self._timer_entry, None
            if entry is not None:
                entry.cancel()
            try:
                self._dispatch(force=True)
                deadline = time.monotonic() + self.settings.shutdown_timeout
                self._finish_done()
                while self.ledger.in_flight > 0:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        job = self._done.get(timeout=remaining)
                    except queue.Empty:
                        break
                    self._finish(job)
            except Exception:
                logger.exception("depcache_celery: could not finish the batches in flight")
            if self.ledger.in_flight:
                logger.warning(
                    "depcache_celery: stopping with %d batch(es) still being applied (managers "
                    "busy: %s); they stay unacknowledged and the broker delivers them again",
                    self.ledger.in_flight,
                    ", ".join(self.lanes.busy()) or "none",
                )
            self.ledger.new_channel()

    def _ack_batch(self, messages: Sequence[Message]) -> int:
        return ack_batch(self.ledger, messages)

    def _process_now(self, messages: list[Message]) -> None:
        with self._lock:
            self.processor.process(messages)  # logs the batch's line

    @staticmethod
    def _targets() -> list[str]:
        return sorted(depcache.registered_managers())

    # -- side effects that must stay on the consumer's channel -------------------------------------
    def _publish_dead_letter(self, letter: dict[str, Any]) -> None:
        if self._producer is None:
            raise RuntimeError("the event consumer has no channel")
        letter.setdefault("queue", self.settings.queue)
        deadletter.publish(self._producer, self.settings.dead_letter_queue, letter)

    def _hand_off(self, dependencies: list[str], managers: list[str]) -> None:
        batch = self._finishing
        ids = [i for i in batch.event_ids if i is not None] if batch is not None else []
        stamps = [p for p in batch.published_at if p is not None] if batch is not None else []
        hand_off(
            self.app,
            dependencies,
            managers,
            settings=self.settings,
            event_ids=ids,
            published_at=min(stamps, default=None),
        )
