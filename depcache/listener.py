"""The background subscription that keeps a manager's L1 coherent across processes.

One daemon thread per manager with an L1 subscribes to the manager's invalidation channel.
The L1 is switched on once the subscription is confirmed, flushed and switched off when the
connection drops, and flushed and switched on again after it reconnects (messages sent
meanwhile are lost). The memory backend announces in process, so no thread is needed there.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from .announce import parse_message
from .backends.cluster_client import create_cluster_client
from .backends.memory import FakeCacheBackend
from .backends.redis_client import create_sync_client
from .config import RedisConfig
from .local import LocalCache

if TYPE_CHECKING:
    from .manager import CacheManager

__all__ = ["InvalidationListener", "listen"]

logger = logging.getLogger("depcache")


def _on_message(l1: LocalCache, data: bytes | str) -> None:
    try:
        message = parse_message(data)
    except ValueError as exc:
        logger.warning("depcache: unreadable invalidation message, flushing L1: %s", exc)
        l1.flush(active=True)
        return
    l1.invalidate(message.dependencies)


class InvalidationListener(threading.Thread):
    """Listens to one channel on Redis (standalone or cluster) and feeds an L1."""

    def __init__(self, config: RedisConfig, channel: str, l1: LocalCache) -> None:
        super().__init__(name=f"depcache-l1-{config.prefix}", daemon=True)
        self.config = config
        self.channel = channel
        self.l1 = l1
        self.stopping = threading.Event()
        self.subscribed = threading.Event()

    def _client(self) -> Any:
        if self.config.cluster:
            return create_cluster_client(self.config)
        return create_sync_client(self.config)

    def run(self) -> None:
        """Subscribe, listen, and on any failure flush, wait and subscribe again."""
        delay = 0.1
        while not self.stopping.is_set():
            try:
                self._listen()
                delay = 0.1
            except Exception as exc:
                logger.warning(
                    "depcache: invalidation channel %s lost (%s); L1 flushed, retrying",
                    self.channel,
                    exc,
                )
            self.subscribed.clear()
            self.l1.flush(active=False)
            self.stopping.wait(delay)
            delay = min(delay * 2, 5.0)

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
                    self.subscribed.set()
                elif message["type"] == "message":
                    _on_message(self.l1, message["data"])
        finally:
            pubsub.close()
            client.close()

    def stop(self) -> None:
        """Ask the thread to end (it does within about half a second)."""
        self.stopping.set()


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
    return thread
