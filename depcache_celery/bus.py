"""What the producer side and the worker side agree on, and nothing else.

- The durable topic exchange events are published to (:func:`event_exchange`) and the worker's
  durable queue bound to it (:func:`event_queue`); both are declared the same way wherever
  they are declared (the worker, ``emit``, ``depcache cdc``).
- How an event goes on the wire (:func:`publish_properties`; the body is the JSON of
  :mod:`depcache_celery.worker.messages`) and the header stamping when it was published
  (:data:`PUBLISHED_AT_HEADER`).
- The names of the worker's tasks (:data:`INVALIDATE_TASK`, :data:`EVENT_TASK`).
"""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue, binding

from .settings import Settings

__all__ = [
    "EVENT_TASK",
    "INVALIDATE_TASK",
    "PUBLISHED_AT_HEADER",
    "event_exchange",
    "event_queue",
    "publish_properties",
]

INVALIDATE_TASK = "depcache.invalidate"
"""``depcache.invalidate(dependencies, managers=None)``: see :mod:`depcache_celery.worker.tasks`."""
EVENT_TASK = "depcache.event"
"""``depcache.event(event, data=None, dependencies=None)``: see
:mod:`depcache_celery.worker.tasks`."""

PUBLISHED_AT_HEADER = "x-depcache-published-at"
"""The header ``emit`` stamps with the Unix time of publication (seconds, a float): what the
worker measures publish-to-invalidated from (else the AMQP ``timestamp``, in whole seconds)."""


def event_exchange(settings: Settings) -> Exchange:
    """The durable topic exchange producers publish events to."""
    return Exchange(settings.exchange, type="topic", durable=True, auto_delete=False)


def event_queue(settings: Settings) -> Queue:
    """The worker's durable queue, bound to :func:`event_exchange` with every binding key, with
    the expiry and length policy of the settings (none by default)."""
    exchange = event_exchange(settings)
    return Queue(
        settings.queue,
        bindings=[binding(exchange, routing_key=key) for key in settings.binding_keys],
        durable=True,
        auto_delete=False,
        queue_arguments=settings.queue_arguments() or None,
    )


def publish_properties(event: str, message_id: str) -> dict[str, Any]:
    """The arguments of kombu's ``Producer.publish`` every event is published with, besides its
    body and exchange: routed by its name, JSON in UTF-8, persistent, its id as message id."""
    return {
        "routing_key": event,
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "delivery_mode": 2,
        "message_id": message_id,
    }
