"""depcache_celery: a Celery worker that fans domain events out to every depcache manager.

- :func:`install` adds the tasks ``depcache.invalidate`` and ``depcache.event`` and the message
  bus consumer to your Celery app; ``depcache_celery.worker`` is a ready-made app.
- :func:`on_event` maps an event to the dependencies it invalidates.
- :func:`emit` / :func:`aemit` publish a domain event from app code, :func:`invalidate_later`
  sends dependencies to the worker, :func:`invalidates` does it after a job succeeds, and
  :func:`forward_invalidations` hands a manager's invalidations to the worker; all wait for
  the commit inside a transaction (:func:`deferred`, Django, :mod:`depcache_celery.sqlalchemy`).
- :func:`publish_database_writes` publishes what instrumented databases (``depcache.db``)
  commit, so other processes' managers hear of it.
- :func:`depcache_celery.testing.capture_emits` records what the app emits, for its tests.
- Other services publish JSON events to a durable topic exchange (see
  :mod:`depcache_celery.worker.messages`); malformed ones go to a dead-letter queue.

Uses only depcache's public API.
"""

from __future__ import annotations

from .bus import EVENT_TASK, INVALIDATE_TASK, event_exchange, event_queue
from .producer.database import (
    DATABASE_EVENT,
    publish_database_writes,
    stop_publishing_database_writes,
)
from .producer.deferral import deferred, register_commit_hook, unregister_commit_hook
from .producer.emit import EmitError, aemit, build_event, emit, invalidate_later
from .producer.forward import forward_invalidations
from .producer.invalidates import invalidates
from .settings import Settings
from .worker.batch import BatchOutcome, BatchProcessor
from .worker.consumer import EventConsumerStep
from .worker.counters import stats
from .worker.fanout import FanoutReport, apply
from .worker.messages import DEFAULT_MAX_MESSAGE_BYTES, BadMessage, BusMessage, parse_message
from .worker.router import EventError, Router, TemplateHandler, default_router, on_event
from .worker.wiring import Installation, install

__all__ = [
    "DATABASE_EVENT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "EVENT_TASK",
    "INVALIDATE_TASK",
    "BadMessage",
    "BatchOutcome",
    "BatchProcessor",
    "BusMessage",
    "EmitError",
    "EventConsumerStep",
    "EventError",
    "FanoutReport",
    "Installation",
    "Router",
    "Settings",
    "TemplateHandler",
    "aemit",
    "apply",
    "build_event",
    "default_router",
    "deferred",
    "emit",
    "event_exchange",
    "event_queue",
    "forward_invalidations",
    "install",
    "invalidate_later",
    "invalidates",
    "on_event",
    "parse_message",
    "publish_database_writes",
    "register_commit_hook",
    "stats",
    "stop_publishing_database_writes",
    "unregister_commit_hook",
]
