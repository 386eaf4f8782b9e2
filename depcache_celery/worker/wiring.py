"""Wiring into a user's Celery app: ``depcache_celery.install(app)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery, Task

from . import metrics
from .consumer import EventConsumerStep
from .monitoring import install_monitoring
from .router import Router
from .tasks import register_tasks

__all__ = ["Installation", "install"]

_ATTR = "_depcache_celery_installation"


@dataclass(frozen=True)
class Installation:
    """What :func:`install` added to an app."""

    app: Celery
    router: Router | None
    invalidate: Task[Any, Any]
    event: Task[Any, Any]
    consumer_step: type[EventConsumerStep]


def install(app: Celery, *, router: Router | None = None) -> Installation:
    """Add depcache's tasks and bus consumer to ``app``; then ``celery -A yourapp worker`` runs
    them.

    Registers the tasks ``depcache.invalidate`` and ``depcache.event`` (see
    :mod:`depcache_celery.worker.tasks`) and the consumer step (see
    :mod:`depcache_celery.worker.consumer`), configured by the ``depcache_*`` settings of
    ``app.conf`` or the environment (see :mod:`depcache_celery.settings`), read when the worker
    starts. ``router`` routes events; None means :data:`depcache_celery.default_router` (where
    :func:`depcache_celery.on_event` registers). Also exposes the counters to operators (see
    :mod:`depcache_celery.worker.monitoring`). Installing again on the same app returns the first
    installation.
    """
    existing: Installation | None = getattr(app, _ATTR, None)
    if existing is not None:
        if router is not None and router is not existing.router:
            raise ValueError("depcache_celery is already installed on this app with another router")
        return existing
    metrics.prepare()  # after the worker chose prometheus-client's mode, before any message
    tasks = register_tasks(app, router)
    step: type[EventConsumerStep] = type(
        "DepcacheEventConsumer", (EventConsumerStep,), {"router": router}
    )
    app.steps["consumer"].add(step)
    install_monitoring(app)
    installation = Installation(app, router, tasks.invalidate, tasks.event, step)
    setattr(app, _ATTR, installation)
    return installation
