"""The background subscription that keeps a manager's L1 coherent across processes.

One daemon thread per manager with an L1 subscribes to the manager's invalidation channel.
The L1 is switched on once the subscription is confirmed, flushed and switched off when the
connection drops, and flushed and switched on again after it reconnects (messages sent
meanwhile are lost). The memory backend announces in process, so no thread is needed there.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ..announce import parse_message
from ..backends.cluster_client import create_cluster_client
from ..backends.memory import FakeCacheBackend
from ..backends.redis_client import create_sync_client
from ..config import RedisConfig
from ._local import LocalCache

if TYPE_CHECKING:
    from ..manager import CacheManager

__all__ = ["FIRST_RETRY_DELAY", "MAX_RETRY_DELAY", "InvalidationListener", "listen"]

logger = logging.getLogger("depcache")


#: the wait before subscribing again after a drop; doubled after each attempt that fails to
#: get a confirmed subscription, up to the maximum; back to the first once one is confirmed
FIRST_RETRY_DELAY = 0.1
MAX_RETRY_DELAY = 5.0


def _on_message(l1: LocalCache, data: bytes | str) -> None:
    """Apply one announcement to ``l1``.

    An announcement that cannot be read (not JSON, ``NaN`` or ``1e999``, nested too deeply, not
    an object, a field of the wrong type) may have been an invalidation of anything the L1
    holds: like a message lost while disconnected, it flushes the whole L1, which then keeps
    serving (every entry is loaded again from Redis). Flushing is the only safe answer: serving
    on could serve an entry invalidated elsewhere until ``l1_max_age``. The subscription stays:
    reading the next message is unaffected, and dropping it would only flush the L1 again and
    switch it off until the reconnection."""
    try:
        message = parse_message(data)
    except Exception as exc:  # parse_message raises ValueError; any failure means unreadable
        logger.warning("depcache: unreadable invalidation message, L1 flushed: %s", exc)
        l1.flush(active=True)
        return
    l1.invalidate(message.dependencies)


class InvalidationListener(threading.Thread):
    """Listens to one channel on Redis (standalone or cluster) and feeds an L1.

    ``subscriptions`` counts the subscriptions confirmed so far (1, plus one per reconnection).
    After a drop it subscribes again after :data:`FIRST_RETRY_DELAY`, doubling the wait after
    each attempt that gets no confirmed subscription (Redis down), up to
    :data:`MAX_RETRY_DELAY`; a confirmed subscription starts the next drop at the first delay
    again. Each drop is logged as a warning naming the wait.
    """

    def __init__(self, config: RedisConfig, channel: str, l1: LocalCache) -> None:
        super().__init__(name=f"depcache-l1-{config.prefix}", daemon=True)
        self.config = config
        self.channel = channel
        self.l1 = l1
        self.stopping = threading.Event()
        self.subscribed = threading.Event()
        #: the thread that took over in a forked child
        self.successor: InvalidationListener | None = None
        self.subscriptions = 0

    def _client(self) -> Any:
        if self.config.cluster:
            return create_cluster_client(self.config)
        return create_sync_client(self.config)

    def run(self) -> None:
        """Subscribe, listen, and on any failure flush, wait and subscribe again."""
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
            self.l1.flush(active=False)
            self.stopping.wait(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)

    def _listen(self) -> None:
        client = self._client()
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            while not self.stopping.is_set():
                message = pubsub.get_message(timeout=0.5)
                if not message:
                    continue
                if message["type"] == "subscribe":
                    self.l1.flush(active=True)
                    self.subscriptions += 1
                    self.subscribed.set()
                elif message["type"] == "message":
                    _on_message(self.l1, message["data"])
        finally:
            pubsub.close()
            client.close()

    def stop(self) -> None:
        """Ask the thread to end (it does within about half a second)."""
        self.stopping.set()
        if self.successor is not None:
            self.successor.stop()


def listen(manager: CacheManager, l1: LocalCache) -> InvalidationListener | None:
    """Start keeping ``l1`` coherent; return the thread, or None for in-process backends."""
    if isinstance(manager.backend, FakeCacheBackend):
        store = manager.backend.store_data
        store.subscribe(manager.invalidation_channel, lambda data: _on_message(l1, data))
        l1.flush(active=True)
        return None
    if not isinstance(manager.config, RedisConfig):
        logger.warning("depcache: L1 needs a Redis or memory backend; it stays off")
        return None
    thread = InvalidationListener(manager.config, manager.invalidation_channel, l1)
    thread.start()
    _listening[thread] = None
    return thread


# the listeners of this process; a forked child has none of their threads
_listening: weakref.WeakKeyDictionary[InvalidationListener, None] = weakref.WeakKeyDictionary()


def _listen_again_after_fork() -> None:
    """In a forked child (a prefork server, a Celery pool child), each L1 inherited from the
    parent would serve entries that no thread keeps coherent: flush it and listen anew."""
    inherited = [t for t in list(_listening) if not t.stopping.is_set()]
    _listening.clear()
    for old in inherited:
        old.l1.flush(active=False)
        thread = InvalidationListener(old.config, old.channel, old.l1)
        old.successor = thread  # what the manager stops when it closes
        thread.start()
        _listening[thread] = None


os.register_at_fork(after_in_child=_listen_again_after_fork)
