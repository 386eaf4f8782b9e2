"""Redis pub/sub for :meth:`~depcache.backends.base.BackendMixin.subscribe`: one daemon thread
per subscription, with its own connection (standalone or cluster), that resubscribes after a
drop and starts again in a forked child.

The thread tells its :class:`~depcache.backends.base.Subscriber` when the subscription is
confirmed (``subscribed``), what arrives (``message``) and when it dropped (``lost``): messages
sent while it was down are lost, which only the subscriber can answer (the L1 flushes).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ..config import RedisConfig
from .base import Subscriber
from .cluster_client import create_cluster_client
from .redis_client import create_sync_client

__all__ = ["FIRST_RETRY_DELAY", "MAX_RETRY_DELAY", "PubSubListener", "subscribe"]

logger = logging.getLogger("depcache")


#: the wait before subscribing again after a drop; doubled after each attempt that fails to
#: get a confirmed subscription, up to the maximum; back to the first once one is confirmed
FIRST_RETRY_DELAY = 0.1
MAX_RETRY_DELAY = 5.0


class PubSubListener(threading.Thread):
    """Listens to one channel on Redis (standalone or cluster) and feeds a subscriber.

    ``subscriptions`` counts the subscriptions confirmed so far (1, plus one per reconnection).
    After a drop it subscribes again after :data:`FIRST_RETRY_DELAY`, doubling the wait after
    each attempt that gets no confirmed subscription (Redis down), up to
    :data:`MAX_RETRY_DELAY`; a confirmed subscription starts the next drop at the first delay
    again. Each drop is logged as a warning naming the wait.
    """

    def __init__(
        self,
        config: RedisConfig,
        channel: str,
        subscriber: Subscriber,
        connect: Callable[[RedisConfig], Any],
    ) -> None:
        super().__init__(name=f"depcache-l1-{config.prefix}", daemon=True)
        self.config = config
        self.channel = channel
        self.subscriber = subscriber
        self.connect = connect
        self.stopping = threading.Event()
        self.subscribed = threading.Event()
        #: the thread that took over in a forked child
        self.successor: PubSubListener | None = None
        self.subscriptions = 0

    def run(self) -> None:
        """Subscribe, listen, and on any failure tell the subscriber, wait and subscribe again."""
        delay = FIRST_RETRY_DELAY
        while not self.stopping.is_set():
            try:
                self._listen()
                continue  # returns only when stopping
            except Exception as exc:
                if self.subscribed.is_set():  # a drop of a working subscription: retry soon
                    delay = FIRST_RETRY_DELAY
                logger.warning(
                    "depcache: invalidation channel %s lost (%s); L1 flushed, retrying in %.1fs",
                    self.channel,
                    exc,
                    delay,
                )
            self.subscribed.clear()
            self.subscriber.lost()
            self.stopping.wait(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)

    def _listen(self) -> None:
        client = self.connect(self.config)
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            while not self.stopping.is_set():
                message = pubsub.get_message(timeout=0.5)
                if not message:
                    continue
                if message["type"] == "subscribe":
                    self.subscriber.subscribed()
                    self.subscriptions += 1
                    self.subscribed.set()
                elif message["type"] == "message":
                    self.subscriber.message(message["data"])
        finally:
            pubsub.close()
            client.close()

    def stop(self) -> None:
        """Ask the thread to end (it does within about half a second)."""
        self.stopping.set()
        if self.successor is not None:
            self.successor.stop()


def subscribe(
    config: RedisConfig, channel: str, subscriber: Subscriber, *, cluster: bool
) -> PubSubListener:
    """Start a listener thread on ``channel`` of the server (or cluster) ``config`` names."""
    connect = create_cluster_client if cluster else create_sync_client
    thread = PubSubListener(config, channel, subscriber, connect)
    thread.start()
    _listening[thread] = None
    return thread


# the listeners of this process; a forked child has none of their threads
_listening: weakref.WeakKeyDictionary[PubSubListener, None] = weakref.WeakKeyDictionary()


def _listen_again_after_fork() -> None:
    """In a forked child (a prefork server, a Celery pool child), each subscriber inherited
    from the parent would miss every message (no thread listens): tell it the subscription was
    lost (an L1 flushes) and listen anew."""
    inherited = [t for t in list(_listening) if not t.stopping.is_set()]
    _listening.clear()
    for old in inherited:
        old.subscriber.lost()
        thread = PubSubListener(old.config, old.channel, old.subscriber, old.connect)
        old.successor = thread  # what the manager stops when it closes
        thread.start()
        _listening[thread] = None


os.register_at_fork(after_in_child=_listen_again_after_fork)
