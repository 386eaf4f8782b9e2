"""A ready-made Celery app for a standalone worker: ``celery -A depcache_celery.worker worker``.

Configured from the environment:

- ``CELERY_BROKER_URL``: the broker (default :data:`~depcache_celery.settings.DEFAULT_BROKER_URL`,
  RabbitMQ on localhost, as for ``emit`` and the ``depcache`` command). ``memory://`` is refused:
  nothing another process sends reaches a worker on it (:func:`make_app` takes it only when
  asked, for a worker started in the producer's own process);
- ``CELERY_RESULT_BACKEND``: optional result backend;
- ``CELERY_CONFIG_MODULE``: optional module of further Celery settings (``task_default_queue``,
  ``depcache_*`` keys, ...), as for any Celery app;
- ``DEPCACHE_SETUP``: comma-separated modules the worker imports when it starts; they create the
  managers (``depcache.get_or_create_cache_manager``) and register event handlers
  (``depcache_celery.on_event``);
- every ``DEPCACHE_*`` setting of :mod:`depcache_celery.settings`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from typing import Any

from celery import Celery, bootsteps

from ..settings import DEFAULT_BROKER_URL
from .wiring import install

__all__ = ["RefuseMemoryBroker", "make_app", "setup_modules"]


def setup_modules(value: str | None = None) -> tuple[str, ...]:
    """The module names in ``DEPCACHE_SETUP`` (or ``value``), comma-separated."""
    raw = os.environ.get("DEPCACHE_SETUP", "") if value is None else value
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _transport(url: str) -> str:
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else url.lower()


class RefuseMemoryBroker(bootsteps.Step):
    """Stops a worker whose broker is ``memory://`` before it starts consuming, naming the
    setting: on it, the worker would log "Connected to memory://" and never see an event."""

    label = "depcache refuse memory broker"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        url = str(parent.app.conf.broker_url or "")
        if _transport(url) == "memory":
            raise SystemExit(
                "depcache_celery: the broker is memory:// (CELERY_BROKER_URL or the "
                "CELERY_CONFIG_MODULE's broker_url): a worker on it only sees what its own "
                "process sends, so every event emitted elsewhere would be lost. Set "
                "CELERY_BROKER_URL to your RabbitMQ or Redis broker (default "
                f"{DEFAULT_BROKER_URL})."
            )


def _multiprocess_metrics() -> None:
    """When the worker serves metrics (``DEPCACHE_PROMETHEUS_PORT``), have prometheus-client
    record them in multiprocess mode, so prefork children's count too: a fresh directory in
    ``PROMETHEUS_MULTIPROC_DIR`` (unless set already), before prometheus-client is imported,
    removed when the worker exits."""
    if not os.environ.get("DEPCACHE_PROMETHEUS_PORT") or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    if "prometheus_client" in sys.modules:  # too late: it chose its mode on import
        return
    directory = tempfile.mkdtemp(prefix="depcache-prometheus-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # not in a forked pool child
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)


def make_app(*, allow_memory_broker: bool = False) -> Celery:
    """A new app configured from the environment, with depcache_celery installed.

    Its worker refuses to start on ``memory://`` unless ``allow_memory_broker`` (for a worker
    started in the process that also sends the events, e.g. a demo or a test).
    """
    celery_app = Celery(
        "depcache_celery",
        broker=os.environ.get("CELERY_BROKER_URL") or None,
        backend=os.environ.get("CELERY_RESULT_BACKEND") or None,
        set_as_current=False,
    )
    celery_app.config_from_envvar("CELERY_CONFIG_MODULE", silent=True)
    _multiprocess_metrics()
    conf = celery_app.conf
    defaults: dict[str, object] = {
        # imported by the worker at startup, like any module in `imports`
        "imports": (*tuple(conf.imports or ()), *setup_modules()),
    }
    if not conf.broker_url:
        defaults["broker_url"] = DEFAULT_BROKER_URL
    if conf.broker_connection_retry_on_startup is None:
        defaults["broker_connection_retry_on_startup"] = True
    conf.update(defaults)
    install(celery_app)
    if not allow_memory_broker:
        celery_app.steps["worker"].add(RefuseMemoryBroker)
    return celery_app
