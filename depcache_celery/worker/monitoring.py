"""The worker's counters (:mod:`depcache_celery.worker.counters`) for operators.

- The Celery inspect command ``depcache_stats``: ``celery -A yourapp inspect depcache_stats``,
  or :func:`inspect_stats` from Python, returns ``{worker hostname: counters}``. It is
  registered in Celery's (process-wide) control panel when this module is imported.
- When ``prometheus-client`` is installed, :func:`install_monitoring` (called by
  :func:`depcache_celery.install`) registers a collector into its default registry that reads
  the counters on each scrape: ``depcache_celery_events_total``,
  ``depcache_celery_unhandled_events_total``, ``depcache_celery_batches_total``,
  ``depcache_celery_dependencies_total``, ``depcache_celery_entries_removed_total``,
  ``depcache_celery_retries_total``, ``depcache_celery_target_failures_total{manager}`` and
  ``depcache_celery_dead_letters_total{kind}``.
- ``depcache_prometheus_port`` (``DEPCACHE_PROMETHEUS_PORT``), unset by default: when set, the
  worker serves those metrics over HTTP on that port while it runs (needs prometheus-client),
  with the latency histograms of :mod:`depcache_celery.worker.metrics` and the cache's own metrics
  (:func:`depcache.metrics.enable`: hits, misses, invalidations per manager, ...). When
  ``PROMETHEUS_MULTIPROC_DIR`` is set (prometheus-client's multiprocess mode; the ready-made
  worker sets up one when it serves metrics), it serves what every process of the worker
  recorded there (prefork children included) plus the counters.
- ``depcache_tracing`` (``DEPCACHE_TRACING``): when true, the worker makes OpenTelemetry spans
  (:func:`depcache_celery.tracing.enable`) from its start.

Both are turned on when the worker starts (Celery's ``worker_init`` signal, before the pool
forks, so prefork children inherit them).

Both report the whole worker (:func:`depcache_celery.worker.counters.worker_snapshot`): the main
process, where the bus consumer counts, plus its prefork pool children, where the
``depcache.invalidate`` and ``depcache.event`` tasks count (each child saves its counters after
each of those tasks; the counts of children that were replaced are kept).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from celery import Celery, bootsteps, signals
from celery.worker.control import Panel, inspect_command

import depcache
import depcache.metrics

from .. import tracing
from ..settings import Settings
from .counters import COUNTERS, Stats, worker_snapshot

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = [
    "INSPECT_COMMAND",
    "PORT_SETTING",
    "PrometheusServerStep",
    "StatsCollector",
    "enable_observability",
    "inspect_stats",
    "install_monitoring",
    "metrics_registry",
    "prometheus_port",
    "register_prometheus",
]

logger = logging.getLogger(__name__)

INSPECT_COMMAND = "depcache_stats"
PORT_SETTING = "depcache_prometheus_port"
_MAX_PORT = 65535

_DOCS = {
    "events": "Events routed (bus messages and event tasks).",
    "unhandled_events": "Events with no handler and no dependencies.",
    "batches": "Batches of bus messages processed.",
    "dependencies": "Dependencies invalidated (after de-duplication per batch).",
    "entries_removed": "Cache entries removed by invalidations.",
    "retries": "Failed shares handed to the retry path.",
}


def _depcache_stats(state: Any) -> dict[str, object]:
    """depcache_celery's counters in this worker (with its pool children)."""
    return worker_snapshot()


def _register_inspect_command() -> None:
    """Add ``depcache_stats`` to Celery's control panel (global to the process), once."""
    if INSPECT_COMMAND not in Panel.data:
        inspect_command(name=INSPECT_COMMAND)(_depcache_stats)


_register_inspect_command()


def inspect_stats(
    app: Celery, *, timeout: float = 1.0, destination: list[str] | None = None
) -> dict[str, dict[str, object]]:
    """Ask the running workers of ``app`` for their counters: ``{hostname: snapshot}``
    (the workers that answered within ``timeout`` seconds)."""
    replies = app.control.broadcast(
        INSPECT_COMMAND, reply=True, timeout=timeout, destination=destination
    )
    out: dict[str, dict[str, object]] = {}
    for reply in replies or []:
        for hostname, snapshot in reply.items():
            out[hostname] = dict(snapshot)
    return out


# --- Prometheus -----------------------------------------------------------------------------------


class StatsCollector:
    """A prometheus-client collector reading ``source`` on each scrape (default the worker's
    counters: this process's and its pool children's)."""

    def __init__(self, source: Stats | None = None) -> None:
        self._read = source.snapshot if source is not None else worker_snapshot

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily  # noqa: PLC0415

        snapshot = self._read()
        for name in COUNTERS:
            value = snapshot.get(name, 0)
            yield CounterMetricFamily(
                f"depcache_celery_{name}",
                _DOCS[name],
                value=value if isinstance(value, int) else 0,
            )
        labelled = (
            ("target_failures", "manager", "Failed invalidations, by cache manager."),
            ("dead_letters", "kind", "Messages dead-lettered, by kind."),
        )
        for name, label, doc in labelled:
            family = CounterMetricFamily(f"depcache_celery_{name}", doc, labels=[label])
            counts = snapshot.get(name)
            if isinstance(counts, Mapping):
                for key, value in sorted(counts.items()):
                    family.add_metric([str(key)], value)
            yield family


_lock = threading.Lock()
_registered: dict[int, StatsCollector] = {}


def register_prometheus(registry: CollectorRegistry | None = None) -> bool:
    """Register a :class:`StatsCollector` into ``registry`` (default prometheus-client's
    ``REGISTRY``), once per registry; False when prometheus-client is not installed."""
    try:
        from prometheus_client import REGISTRY  # noqa: PLC0415
    except ImportError:
        return False
    target = registry if registry is not None else REGISTRY
    with _lock:
        if id(target) not in _registered:
            collector = StatsCollector()
            target.register(collector)
            _registered[id(target)] = collector
    return True


def prometheus_port(
    conf: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> int | None:
    """The ``depcache_prometheus_port`` setting (``app.conf``, then the environment), or None."""
    conf = conf if conf is not None else {}
    environ = environ if environ is not None else os.environ
    name, value = PORT_SETTING, conf.get(PORT_SETTING)
    if value is None:
        name, value = PORT_SETTING.upper(), environ.get(PORT_SETTING.upper()) or None
    if value is None:
        return None
    try:
        port = int(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else -1
    except ValueError:
        port = -1
    if not 0 < port <= _MAX_PORT:
        raise depcache.ConfigError(f"{name} must be a TCP port (1-{_MAX_PORT}), got {value!r}")
    return port


class PrometheusServerStep(bootsteps.StartStopStep):
    """A worker bootstep serving the metrics over HTTP on ``depcache_prometheus_port`` while the
    worker runs (nothing when the setting is unset)."""

    label = "depcache prometheus server"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.server: WSGIServer | None = None

    def start(self, parent: Any) -> None:
        port = prometheus_port(parent.app.conf)
        if port is None:
            return
        if not register_prometheus():
            logger.warning("%s is set but prometheus-client is not installed", PORT_SETTING)
            return
        from prometheus_client import start_http_server  # noqa: PLC0415

        depcache.metrics.enable()  # the cache's metrics of this worker's managers
        self.server, _ = start_http_server(port, registry=metrics_registry())
        logger.info("depcache_celery serves Prometheus metrics on port %d", port)

    def stop(self, parent: Any) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def terminate(self, parent: Any) -> None:
        self.stop(parent)

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)


def metrics_registry() -> CollectorRegistry:
    """What the worker serves: prometheus-client's default registry (with the counters'
    collector), or, in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), a registry of what
    every process recorded there plus the counters."""
    from prometheus_client import REGISTRY, CollectorRegistry  # noqa: PLC0415

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        register_prometheus()
        return REGISTRY
    from prometheus_client import multiprocess  # noqa: PLC0415

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(StatsCollector())
    return registry


_apps: weakref.WeakSet[Celery] = weakref.WeakSet()


def enable_observability(conf: Mapping[str, Any]) -> None:
    """What a worker of an app with depcache_celery installed turns on, from its settings: the
    cache's metrics (:func:`depcache.metrics.enable`) when it serves Prometheus metrics, and
    tracing (:func:`depcache_celery.tracing.enable`) when ``depcache_tracing`` is true."""
    if prometheus_port(conf) is not None:
        try:
            depcache.metrics.enable()  # the cache's metrics of this worker's managers
        except ImportError:
            logger.warning("%s is set but prometheus-client is not installed", PORT_SETTING)
    if Settings.from_conf(conf).tracing:
        try:
            tracing.enable()
        except ImportError:
            logger.warning(
                "depcache_tracing is set but opentelemetry-api is not installed: pip install "
                '"depcache[otel]"'
            )
            return
        logger.info("depcache_celery makes OpenTelemetry spans")


@signals.worker_init.connect(weak=False)
def _on_worker_init(sender: Any = None, **kwargs: Any) -> None:
    """Before the worker's pool starts (so prefork children inherit it)."""
    app = getattr(sender, "app", None)
    if app is not None and app in _apps:
        try:
            enable_observability(app.conf)
        except Exception:
            logger.exception("depcache_celery: could not turn on metrics or tracing")


def install_monitoring(app: Celery) -> None:
    """Register the Prometheus collector (if prometheus-client is installed) and ``app``'s
    worker step serving it; its workers turn on metrics and tracing as their settings say
    (:func:`enable_observability`); the inspect command is registered on import."""
    register_prometheus()
    app.steps["worker"].add(PrometheusServerStep)
    _apps.add(app)
