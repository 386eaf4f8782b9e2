"""The web app's Celery app: depcache_celery's tasks and bus consumer plus the app's own job.

    celery -A examples.webapp.worker worker

Broker: CELERY_BROKER_URL (default ``memory://``, one process only); CELERY_CONFIG_MODULE may
name a module of further Celery settings; ``depcache_*`` settings come from the environment
(DEPCACHE_EXCHANGE, ...). The job ``webapp.rename_user`` (``jobs.py``) updates the store, then
emits ``user.updated``; the worker's bus consumer turns that into ``user:{id}`` invalidations on
every manager registered in ``cache.py``.
"""

from __future__ import annotations

import os

from celery import Celery

import depcache_celery

from . import cache, jobs

RENAME_TASK = jobs.RENAME_TASK


def make_app(broker_url: str | None = None) -> Celery:
    """The Celery app, configured from the environment (or ``broker_url``)."""
    celery_app = Celery(
        "webapp",
        broker=broker_url or os.environ.get("CELERY_BROKER_URL") or "memory://",
        set_as_current=False,
    )
    celery_app.conf.broker_connection_retry_on_startup = True
    celery_app.config_from_envvar("CELERY_CONFIG_MODULE", silent=True)
    depcache_celery.install(celery_app)  # tasks depcache.invalidate / depcache.event + bus consumer
    cache.setup()
    return celery_app


app = make_app()
