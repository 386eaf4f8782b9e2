"""The worker side: what runs in ``celery worker`` to apply events and invalidations.

``celery -A depcache_celery.worker worker`` runs the ready-made app (:data:`app`, built from the
environment on first use by :func:`make_app`; see :mod:`~depcache_celery.worker.standalone`).
Importing this package or its modules builds no app.

How a message travels through the modules:

- ``wiring.py``      :func:`depcache_celery.install`: the tasks, the consumer step, monitoring;
- ``consumer.py``    the Celery consumer step on the topic exchange (kombu), batching and acks,
  with its bookkeeping in ``ledger.py`` (no kombu: when a batch is due, what one ack settles);
- ``messages.py``    the bus message format and its validation (``debezium.py``: Debezium
  envelopes);
- ``batch.py``       one batch: parse, route, invalidate, ack or dead-letter;
- ``router.py``      ``on_event`` handlers and templates: an event -> its dependencies;
- ``fanout.py``      :func:`apply`: every manager, concurrently; the no-loop context;
- ``tasks.py``       ``depcache.invalidate`` / ``depcache.event`` and the retry path;
- ``deadletter.py``  dead letters: envelope and queue;
- ``counters.py``, ``monitoring.py``, ``metrics.py``, ``logfields.py``: counters, the inspect
  command and Prometheus, latency histograms, log fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .standalone import RefuseMemoryBroker, make_app, setup_modules

if TYPE_CHECKING:
    from celery import Celery

    app: Celery

__all__ = ["RefuseMemoryBroker", "app", "make_app", "setup_modules"]


def __getattr__(name: str) -> object:
    # The ready-made app is made on first use (``celery -A depcache_celery.worker`` reads
    # ``app``), not on import: importing depcache_celery imports this package.
    if name == "app":
        made = make_app()
        globals()["app"] = made
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
