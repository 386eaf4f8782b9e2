"""A ready-made Celery app for a standalone worker: ``celery -A depcache_celery.worker worker``.

Configured from the environment:

- ``CELERY_BROKER_URL``: the broker (default ``memory://``, which only works in one process);
- ``CELERY_RESULT_BACKEND``: optional result backend;
- ``CELERY_CONFIG_MODULE``: optional module of further Celery settings (``task_default_queue``,
  ``depcache_*`` keys, ...), as for any Celery app;
- ``DEPCACHE_SETUP``: comma-separated modules the worker imports when it starts; they create the
  managers (``depcache.get_or_create_cache_manager``) and register event handlers
  (``depcache_celery.on_event``);
- every ``DEPCACHE_*`` setting of :mod:`depcache_celery.settings`.
"""

from __future__ import annotations

import os

from celery import Celery

from .app import install

__all__ = ["app", "make_app", "setup_modules"]


def setup_modules(value: str | None = None) -> tuple[str, ...]:
    """The module names in ``DEPCACHE_SETUP`` (or ``value``), comma-separated."""
    raw = os.environ.get("DEPCACHE_SETUP", "") if value is None else value
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def make_app() -> Celery:
    """A new app configured from the environment, with depcache_celery installed."""
    celery_app = Celery(
        "depcache_celery",
        broker=os.environ.get("CELERY_BROKER_URL") or None,
        backend=os.environ.get("CELERY_RESULT_BACKEND") or None,
        set_as_current=False,
    )
    celery_app.config_from_envvar("CELERY_CONFIG_MODULE", silent=True)
    conf = celery_app.conf
    defaults: dict[str, object] = {
        # imported by the worker at startup, like any module in `imports`
        "imports": (*tuple(conf.imports or ()), *setup_modules()),
    }
    if not conf.broker_url:
        defaults["broker_url"] = "memory://"
    if conf.broker_connection_retry_on_startup is None:
        defaults["broker_connection_retry_on_startup"] = True
    conf.update(defaults)
    install(celery_app)
    return celery_app


app = make_app()
