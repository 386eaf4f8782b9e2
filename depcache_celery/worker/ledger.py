"""The bus consumer's bookkeeping: batching and acknowledgements, without a broker.

The consumer step (:mod:`depcache_celery.worker.consumer`) owns the kombu side: the channel,
the event loop's timers, the lanes' threads, the acknowledgements themselves. What it decides
is kept here, as plain state read through an injected clock:

- **Gathering.** Delivered messages gather in one batch. It is due once its window has ended
  (``window`` seconds after its first message; with no window, at once) and, while batches are
  in flight, once a lane is free; until then it grows. :meth:`Ledger.take` hands it out.
- **In flight.** Batches handed to the lanes are counted per channel: each new channel starts a
  new *generation*, and a batch finished after its channel closed is not acknowledged (the
  broker delivers its messages again).
- **Acknowledgements (AMQP).** The deliveries not yet settled are kept by delivery tag, in
  delivery order, so that a finished batch can be acknowledged with one
  ``basic.ack(multiple=True)`` exactly when no message delivered before it is still pending
  (:meth:`Ledger.multiple_ack_tag`).

Not thread-safe: the consumer calls it from its own thread (under its lock).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar, cast

__all__ = ["Delivery", "Ledger", "delivery_tag"]


class Delivery(Protocol):
    """What the ledger reads of a delivered message (a kombu ``Message`` has both)."""

    @property
    def delivery_tag(self) -> object:
        """The broker's tag: an integer growing on its channel (AMQP)."""

    @property
    def acknowledged(self) -> bool:
        """True once the message is settled (acknowledged, rejected or requeued)."""


D = TypeVar("D", bound=Delivery)


def delivery_tag(message: Delivery) -> int:
    """A message's delivery tag as an integer (AMQP's grow on each channel)."""
    return int(cast(int, message.delivery_tag))


class Ledger(Generic[D]):
    """The state behind the consumer's batching and acknowledgements (see the module).

    ``window``: how long a batch gathers after its first message (seconds; 0: it is due at
    once). ``stream``: without a window, a batch whose first message comes within this long of
    the previous batch's :meth:`take` (messages streaming in, e.g. a backlog) gathers this long
    (0: never); a message after a longer gap is due at once. ``multi_ack``: track deliveries
    so that batches can be acknowledged with one multiple ack (AMQP with an event loop).
    ``clock``: seconds, monotonic (the event loop's clock: :func:`time.monotonic`). ``window``
    and ``multi_ack`` may change when the consumer starts.
    """

    def __init__(
        self,
        *,
        window: float = 0.0,
        stream: float = 0.0,
        multi_ack: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.stream = stream
        self._last_take = -math.inf  # when the last batch was taken (by the clock)
        self.multi_ack = multi_ack
        self._clock = clock
        self._buffer: list[D] = []
        self._window_ends = 0.0  # when the gathering batch is due (by the clock)
        self._in_flight = 0
        self._generation = 0
        # by delivery tag, in delivery order (an OrderedDict: its first item is found in O(1))
        self._outstanding: OrderedDict[int, D] = OrderedDict()

    # -- gathering ---------------------------------------------------------------------------------
    def add(self, message: D) -> float | None:
        """Add a delivered message to the gathering batch (and track it, with ``multi_ack``).

        Returns None when the batch was already gathering; else, for the batch this message
        opens, the seconds after which its window ends (0.0: no window, the batch is due now).
        """
        if self.multi_ack:
            self.track(message)
        first = not self._buffer
        self._buffer.append(message)
        if not first:
            return None
        now = self._clock()
        window = self.window if self.window > 0 else 0.0
        if not window and now - self._last_take < self.stream:
            window = self.stream  # streaming in: gather a larger batch
        self._window_ends = now + window
        return window

    @property
    def gathering(self) -> int:
        """How many messages the gathering batch holds."""
        return len(self._buffer)

    def window_left(self) -> float:
        """Seconds until the gathering batch's window ends; 0.0 once it has (or none gathers)."""
        if not self._buffer:
            return 0.0
        return max(0.0, self._window_ends - self._clock())

    def take(self, lane_free: Callable[[], bool], *, force: bool = False) -> list[D] | None:
        """The gathering batch's messages when it is due, emptying it; None when it is not.

        Due: not empty, its window ended, and no batch in flight or ``lane_free()`` (asked only
        while batches are in flight). ``force``: due whenever it is not empty (stopping).
        """
        if not self._buffer:
            return None
        if not force:
            if self.window_left() > 0:
                return None
            if self._in_flight and not lane_free():
                return None  # it grows until a lane is free
        messages, self._buffer = self._buffer, []
        self._last_take = self._clock()
        return messages

    # -- in flight ---------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Batches of this channel handed to the lanes and not finished yet."""
        return self._in_flight

    @property
    def generation(self) -> int:
        """This channel's number: it grows with each :meth:`new_channel`."""
        return self._generation

    def launched(self) -> int:
        """Count a batch handed to the lanes; returns the generation to finish it with."""
        self._in_flight += 1
        return self._generation

    def landed(self, generation: int) -> bool:
        """Count a batch the lanes finished. False when it belongs to a closed channel (its
        messages must not be acknowledged: the broker delivers them again)."""
        if generation != self._generation:
            return False
        self._in_flight -= 1
        return True

    def new_channel(self) -> None:
        """A new channel (or none): forget the gathering batch, the batches in flight and the
        deliveries of the old one, whose unacknowledged messages the broker delivers again."""
        self._outstanding = OrderedDict()
        self._buffer = []
        self._in_flight = 0
        self._generation += 1

    # -- acknowledgements --------------------------------------------------------------------------
    def track(self, message: D) -> None:
        """Note a delivered message until it is settled. Settled ones at the front are dropped
        first, so the map stays within the prefetch window even when every batch is
        acknowledged one message at a time."""
        self.prune()
        self._outstanding[delivery_tag(message)] = message

    def prune(self) -> None:
        """Drop the settled deliveries at the front (call after acknowledging)."""
        outstanding = self._outstanding
        while outstanding:
            tag, message = next(iter(outstanding.items()))
            if not message.acknowledged:
                break
            del outstanding[tag]

    @property
    def pending(self) -> list[int]:
        """The delivery tags tracked and not known to be settled yet, in delivery order (with
        settled ones behind the first pending one)."""
        return list(self._outstanding)

    def multiple_ack_tag(self, messages: Sequence[D]) -> int | None:
        """The tag for one ``basic.ack(multiple=True)`` acknowledging exactly ``messages`` (a
        finished batch): their highest, when every tracked delivery up to it is one of them or
        settled already. None when such an ack would cover a pending message (or without
        ``multi_ack``): acknowledge them one by one."""
        if not self.multi_ack or not messages:
            return None
        top = max(delivery_tag(message) for message in messages)
        ours = {id(message) for message in messages}
        covered = all(
            id(message) in ours or message.acknowledged
            for tag, message in self._outstanding.items()
            if tag <= top
        )
        return top if covered else None
