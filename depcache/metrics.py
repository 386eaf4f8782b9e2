"""Prometheus metrics of the cache: ``depcache.metrics.enable()`` (``pip install
"depcache[prometheus]"``).

Off until enabled, and then free of cost again when :func:`disable` d (see
:mod:`depcache.observe`). Once enabled, every decorated call and every invalidation of every
manager of the process counts in prometheus-client's default registry (or the one given):

- ``depcache_hits_total``, ``depcache_misses_total`` (counters, by ``manager`` and
  ``function``): decorated calls served from the cache, and those that computed;
- ``depcache_stores_total``, ``depcache_stores_refused_total``: results stored after a miss,
  and those refused because a dependency was invalidated while they were computed (the
  stale-set guard);
- ``depcache_errors_total``: backend and serialization errors of decorated calls, raised or
  silenced;
- ``depcache_call_seconds`` (histogram, by ``manager``, ``function`` and ``result``: ``hit``,
  ``miss`` or ``error``): whole decorated calls, computing included;
- ``depcache_invalidations_total``, ``depcache_invalidated_entries_total``,
  ``depcache_invalidation_errors_total`` (counters, by ``manager``) and
  ``depcache_invalidation_seconds`` (histogram, by ``manager``): every invalidation of a
  manager, wherever it comes from (manager methods, ``depcache.invalidate``, the worker).

``function`` is the decorated function's ``module.qualname``. With prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before it is imported: gunicorn, Celery
prefork), every process's counts are added up by its ``MultiProcessCollector``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from . import observe
from .errors import DepCacheError

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["METRIC_NAMES", "PrometheusInstrument", "disable", "enable", "enabled"]

CALL_LABELS = ("manager", "function")
METRIC_NAMES = (
    "depcache_hits_total",
    "depcache_misses_total",
    "depcache_stores_total",
    "depcache_stores_refused_total",
    "depcache_errors_total",
    "depcache_call_seconds",
    "depcache_invalidations_total",
    "depcache_invalidated_entries_total",
    "depcache_invalidation_errors_total",
    "depcache_invalidation_seconds",
)
"""The names of the metrics this module exports (counters with their ``_total``)."""

# from a ~100 µs Redis hit to a slow computation
CALL_BUCKETS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025)
CALL_BUCKETS += (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PrometheusInstrument:
    """The :class:`depcache.observe.Instrument` that feeds the metrics of the module's table."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        try:
            from prometheus_client import REGISTRY, Counter, Histogram  # noqa: PLC0415
        except ImportError as exc:
            raise ImportError(
                'depcache.metrics needs prometheus-client: pip install "depcache[prometheus]"'
            ) from exc
        target = registry if registry is not None else REGISTRY
        self.registry = target

        def counter(name: str, doc: str, labels: tuple[str, ...] = CALL_LABELS) -> Any:
            return Counter(name.removesuffix("_total"), doc, labels, registry=target)

        self.hits = counter("depcache_hits_total", "Decorated calls served from the cache.")
        self.misses = counter("depcache_misses_total", "Decorated calls that computed.")
        self.stores = counter("depcache_stores_total", "Results stored after a miss.")
        self.refused = counter(
            "depcache_stores_refused_total",
            "Results not stored: a dependency was invalidated while they were computed.",
        )
        self.errors = counter(
            "depcache_errors_total", "Backend and serialization errors of decorated calls."
        )
        self.calls = Histogram(
            "depcache_call_seconds",
            "Duration of decorated calls, computing included.",
            (*CALL_LABELS, "result"),
            buckets=CALL_BUCKETS,
            registry=target,
        )
        self.invalidations = counter(
            "depcache_invalidations_total", "Invalidations, by manager.", ("manager",)
        )
        self.invalidated = counter(
            "depcache_invalidated_entries_total",
            "Entries removed by invalidations, by manager.",
            ("manager",),
        )
        self.invalidation_errors = counter(
            "depcache_invalidation_errors_total", "Invalidations that failed.", ("manager",)
        )
        self.invalidation_seconds = Histogram(
            "depcache_invalidation_seconds",
            "Duration of invalidations, by manager.",
            ("manager",),
            buckets=CALL_BUCKETS,
            registry=target,
        )

    def call_started(self, probe: observe.CallProbe) -> None:
        """Nothing to do before the call."""

    def call_finished(self, probe: observe.CallProbe, error: BaseException | None) -> None:
        """Count the call by what happened (see the module's table)."""
        labels = (probe.manager, probe.function)
        result = probe.result
        if result == "hit":
            self.hits.labels(*labels).inc()
        elif result == "miss":
            self.misses.labels(*labels).inc()
        if probe.stored:
            self.stores.labels(*labels).inc()
        if probe.refused:
            self.refused.labels(*labels).inc()
        failed = probe.errors or isinstance(error, DepCacheError)
        if failed:
            self.errors.labels(*labels).inc(max(1, probe.errors))
        outcome = "error" if failed and result is None else (result or "error")
        self.calls.labels(*labels, outcome).observe(probe.duration)

    def invalidation_started(self, probe: observe.InvalidationProbe) -> None:
        """Nothing to do before the invalidation."""

    def invalidation_finished(
        self, probe: observe.InvalidationProbe, error: BaseException | None
    ) -> None:
        """Count the invalidation, its entries and its duration."""
        name = probe.manager
        if error is not None:
            self.invalidation_errors.labels(name).inc()
        else:
            self.invalidations.labels(name).inc()
            self.invalidated.labels(name).inc(probe.removed)
        self.invalidation_seconds.labels(name).observe(probe.duration)


_lock = threading.Lock()
_instruments: dict[int, PrometheusInstrument] = {}


def enable(registry: CollectorRegistry | None = None) -> PrometheusInstrument:
    """Start counting into ``registry`` (default prometheus-client's ``REGISTRY``); enabling
    again with the same registry returns the same instrument.

    Raises:
        ImportError: prometheus-client is not installed.
    """
    with _lock:
        key = id(registry)
        instrument = _instruments.get(key)
        if instrument is None:
            instrument = _instruments[key] = PrometheusInstrument(registry)
        observe.install(instrument)
        return instrument


def disable() -> None:
    """Stop counting (the metrics stay registered, at their last values)."""
    with _lock:
        for instrument in _instruments.values():
            observe.uninstall(instrument)


def enabled() -> bool:
    """Whether an instrument of this module is installed."""
    return any(isinstance(i, PrometheusInstrument) for i in observe.installed())
