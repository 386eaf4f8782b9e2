"""depcache_celery: a Celery worker that fans domain events out to every depcache manager.

- :func:`install` adds the tasks ``depcache.invalidate`` and ``depcache.event`` and the message
  bus consumer to your Celery app; ``depcache_celery.worker`` is a ready-made app.
- :func:`on_event` maps an event to the dependencies it invalidates.
- Other services publish JSON events to a durable topic exchange (see
  :mod:`depcache_celery.messages`); malformed ones go to a dead-letter queue.

Uses only depcache's public API.
"""

from __future__ import annotations

from .app import Installation, install
from .batch import BatchOutcome, BatchProcessor
from .consumer import EventConsumerStep, event_exchange, event_queue
from .counters import stats
from .events import EventError, Router, TemplateHandler, default_router, on_event
from .fanout import FanoutReport, apply
from .messages import DEFAULT_MAX_MESSAGE_BYTES, BadMessage, BusMessage, parse_message
from .settings import Settings
from .tasks import EVENT_TASK, INVALIDATE_TASK

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "EVENT_TASK",
    "INVALIDATE_TASK",
    "BadMessage",
    "BatchOutcome",
    "BatchProcessor",
    "BusMessage",
    "EventConsumerStep",
    "EventError",
    "FanoutReport",
    "Installation",
    "Router",
    "Settings",
    "TemplateHandler",
    "apply",
    "default_router",
    "event_exchange",
    "event_queue",
    "install",
    "on_event",
    "parse_message",
    "stats",
]
