"""The consumer's bookkeeping (:class:`depcache_celery.worker.ledger.Ledger`) without a broker:
batch windows read from an injected clock, batches in flight per channel, and which batches one
``basic.ack(multiple=True)`` may settle. kombu messages on a recording channel stand in for the
broker's deliveries."""

from __future__ import annotations

from typing import Any

from kombu.message import Message

from depcache_celery.worker.consumer import ack_batch
from depcache_celery.worker.ledger import Ledger


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Channel:
    """Records the acknowledgements a message or :func:`ack_batch` sends."""

    no_ack_consumers = None  # read by Message.ack()

    def __init__(self) -> None:
        self.acks: list[tuple[int, bool]] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.acks.append((tag, multiple))


def _deliveries(channel: Channel, count: int, first: int = 1) -> list[Message]:
    return [
        Message(body=b"{}", delivery_tag=tag, channel=channel)
        for tag in range(first, first + count)
    ]


def _never() -> bool:
    raise AssertionError("the lanes are asked only while a batch is in flight")


# -- gathering ------------------------------------------------------------------------------------


def test_a_batch_gathers_for_its_window_from_its_first_message() -> None:
    clock = Clock()
    ledger: Ledger[Message] = Ledger(window=0.5, clock=clock)
    m = _deliveries(Channel(), 3)
    assert ledger.add(m[0]) == 0.5  # the first message opens the batch: wake up in 0.5 s
    clock.advance(0.375)
    assert ledger.add(m[1]) is None  # joins it; the window still ends 0.5 s after m[0]
    assert ledger.window_left() == 0.125
    assert ledger.take(_never) is None
    assert ledger.gathering == 2
    clock.advance(0.125)
    assert ledger.window_left() == 0.0
    assert ledger.take(_never) == [m[0], m[1]]
    assert ledger.gathering == 0
    assert ledger.take(_never) is None  # nothing gathers
    clock.advance(5)
    assert ledger.add(m[2]) == 0.5  # a new batch, a new window from its first message
    assert ledger.take(_never) is None


def test_without_a_window_a_batch_is_due_at_once() -> None:
    ledger: Ledger[Message] = Ledger(clock=Clock())
    m = _deliveries(Channel(), 2)
    assert ledger.add(m[0]) == 0.0
    assert ledger.add(m[1]) is None
    assert ledger.take(_never) == m


def test_a_batch_grows_while_batches_are_in_flight_until_a_lane_is_free() -> None:
    ledger: Ledger[Message] = Ledger(clock=Clock())
    m = _deliveries(Channel(), 4)
    ledger.add(m[0])
    assert ledger.take(_never) == [m[0]]
    assert ledger.launched() == ledger.generation
    assert ledger.in_flight == 1
    free = False
    asked: list[bool] = []

    def lane_free() -> bool:
        asked.append(free)
        return free

    for message in m[1:]:
        ledger.add(message)
        assert ledger.take(lane_free) is None  # every lane is busy: it waits and grows
    assert asked == [False, False, False]
    free = True
    assert ledger.take(lane_free) == m[1:]


def test_forcing_hands_out_what_gathers_regardless_of_window_and_lanes() -> None:
    ledger: Ledger[Message] = Ledger(window=30.0, clock=Clock())
    m = _deliveries(Channel(), 2)
    ledger.launched()
    ledger.add(m[0])
    ledger.add(m[1])
    assert ledger.take(lambda: False) is None
    assert ledger.take(lambda: False, force=True) == m
    assert ledger.take(lambda: False, force=True) is None  # nothing left


# -- in flight, per channel -----------------------------------------------------------------------


def test_a_batch_of_a_closed_channel_does_not_land() -> None:
    ledger: Ledger[Message] = Ledger(multi_ack=True, clock=Clock())
    channel = Channel()
    old = ledger.launched()
    kept = ledger.launched()
    assert ledger.in_flight == 2
    assert ledger.landed(kept)
    assert ledger.in_flight == 1
    ledger.add(_deliveries(channel, 1)[0])
    ledger.new_channel()  # the connection was lost: its deliveries come again
    assert ledger.generation == old + 1
    assert ledger.in_flight == 0
    assert ledger.gathering == 0
    assert ledger.pending == []
    assert not ledger.landed(old)  # applied after its channel closed: not to be acknowledged
    assert ledger.in_flight == 0
    fresh = ledger.launched()
    assert fresh == ledger.generation
    assert ledger.landed(fresh)


# -- acknowledgements -----------------------------------------------------------------------------


def test_deliveries_are_tracked_in_order_and_settled_ones_leave_from_the_front() -> None:
    ledger: Ledger[Message] = Ledger(multi_ack=True, clock=Clock())
    channel = Channel()
    m = _deliveries(channel, 4)
    for message in m:
        ledger.add(message)
    assert ledger.pending == [1, 2, 3, 4]
    m[1].ack()
    ledger.prune()
    assert ledger.pending == [1, 2, 3, 4]  # m[0] is pending: nothing behind it leaves yet
    m[0].ack()
    ledger.prune()
    assert ledger.pending == [3, 4]


def test_tracking_stays_within_the_window_when_batches_of_one_are_acked() -> None:
    ledger: Ledger[Message] = Ledger(multi_ack=True, clock=Clock())
    for message in _deliveries(Channel(), 500):
        ledger.track(message)
        message.ack()
        assert len(ledger.pending) <= 1


def test_without_multiple_acks_nothing_is_tracked() -> None:
    ledger: Ledger[Message] = Ledger(clock=Clock())
    channel = Channel()
    m = _deliveries(channel, 3)
    for message in m:
        ledger.add(message)
    assert ledger.pending == []
    assert ledger.multiple_ack_tag(m) is None
    assert ack_batch(ledger, m) == 3
    assert channel.acks == [(1, False), (2, False), (3, False)]


def test_one_multiple_ack_settles_a_batch_only_when_nothing_before_it_is_pending() -> None:
    ledger: Ledger[Message] = Ledger(multi_ack=True, clock=Clock())
    channel = Channel()
    m = _deliveries(channel, 7)
    for message in m:
        ledger.track(message)
    # m[0] is pending (its batch is in flight): a multiple ack up to 3 would settle it too
    assert ledger.multiple_ack_tag([m[1], m[2]]) is None
    assert ack_batch(ledger, [m[1], m[2]]) == 2
    assert channel.acks == [(2, False), (3, False)]
    # m[0] settles with m[3] and m[4]: everything up to 5 is theirs or settled
    assert ledger.multiple_ack_tag([m[0], m[3], m[4]]) == 5
    assert ack_batch(ledger, [m[0], m[3], m[4]]) == 3
    assert channel.acks[-1] == (5, True)
    assert len(channel.acks) == 3
    assert all(message.acknowledged for message in m[:5])
    assert ledger.pending == [6, 7]
    # a later batch while an earlier one is pending: one by one again
    assert ledger.multiple_ack_tag([m[6]]) is None
    assert ledger.multiple_ack_tag([m[5], m[6]]) == 7


def test_a_batch_without_a_channel_is_acknowledged_one_by_one() -> None:
    ledger: Ledger[Message] = Ledger(multi_ack=True, clock=Clock())
    acked: list[Any] = []
    m = _deliveries(Channel(), 2)
    for message in m:
        ledger.track(message)
        message.channel = None
        message.ack = lambda message=message: acked.append(message.delivery_tag)  # type: ignore[method-assign]
    assert ledger.multiple_ack_tag(m) == 2
    assert ack_batch(ledger, m) == 2
    assert acked == [1, 2]


def test_messages_streaming_in_gather_for_the_stream_window_and_a_lone_one_is_not_held() -> None:
    clock = Clock()
    ledger: Ledger[Message] = Ledger(stream=0.002, clock=clock)
    m = _deliveries(Channel(), 4)
    assert ledger.add(m[0]) == 0.0  # nothing taken before: a lone message is due at once
    assert ledger.take(_never) == [m[0]]
    clock.advance(0.001)  # the next one streams in right behind the batch just taken
    assert ledger.add(m[1]) == 0.002
    assert ledger.add(m[2]) is None
    assert ledger.take(_never) is None  # still gathering
    clock.advance(0.002)
    assert ledger.take(_never) == [m[1], m[2]]
    clock.advance(0.010)  # after a longer gap: not held
    assert ledger.add(m[3]) == 0.0
    assert ledger.take(_never) == [m[3]]


def test_a_configured_window_wins_over_the_stream_window() -> None:
    clock = Clock()
    ledger: Ledger[Message] = Ledger(window=0.5, stream=0.002, clock=clock)
    m = _deliveries(Channel(), 2)
    assert ledger.add(m[0]) == 0.5
    clock.advance(0.5)
    assert ledger.take(_never) == [m[0]]
    assert ledger.add(m[1]) == 0.5
