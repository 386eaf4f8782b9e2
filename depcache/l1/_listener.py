"""What keeps an L1 coherent across processes: the backend's invalidation announcements.

The L1 subscribes through its manager's backend (:meth:`~depcache.backends.base.BackendMixin.
subscribe`): Redis pub/sub in a daemon thread (``backends/pubsub.py``), or in process for the
memory backend. The L1 is switched on once the subscription is confirmed, flushed and switched
off when it drops, and flushed and switched on again after it reconnects (messages sent
meanwhile are lost).
"""

from __future__ import annotations

import logging

from ..announce import parse_announcement
from ..backends.base import BackendMixin, Subscription
from ._local import LocalCache

__all__ = ["L1Feed", "listen"]

logger = logging.getLogger("depcache")


class L1Feed:
    """The :class:`~depcache.backends.base.Subscriber` of an L1."""

    __slots__ = ("l1",)

    def __init__(self, l1: LocalCache) -> None:
        self.l1 = l1

    def subscribed(self) -> None:
        """Messages may have been lost until now: flush, then serve."""
        self.l1.flush(active=True)

    def lost(self) -> None:
        """Messages are lost from now on: flush and serve nothing."""
        self.l1.flush(active=False)

    def message(self, data: bytes | str) -> None:
        """Apply one announcement.

        An announcement that cannot be read (not JSON, ``NaN`` or ``1e999``, nested too deeply,
        not an object, a field of the wrong type) may have been an invalidation of anything the
        L1 holds: like a message lost while disconnected, it flushes the whole L1, which then
        keeps serving (every entry is loaded again from Redis). Flushing is the only safe
        answer: serving on could serve an entry invalidated elsewhere until ``l1_max_age``. The
        subscription stays: reading the next message is unaffected, and dropping it would only
        flush the L1 again and switch it off until the reconnection."""
        try:
            message = parse_announcement(data)
        except Exception as exc:  # parse_announcement raises ValueError; any failure: unreadable
            logger.warning("depcache: unreadable invalidation message, L1 flushed: %s", exc)
            self.l1.flush(active=True)
            return
        self.l1.invalidate(message.dependencies)


def listen(backend: BackendMixin, channel: str, l1: LocalCache) -> Subscription | None:
    """Keep ``l1`` coherent with the invalidations announced on ``channel``; return the
    subscription (stop it when the manager closes), or None if ``backend`` announces nothing
    (the L1 then stays off)."""
    subscription = backend.subscribe(channel, L1Feed(l1))
    if subscription is None:
        logger.warning("depcache: L1 needs a Redis or memory backend; it stays off")
    return subscription
