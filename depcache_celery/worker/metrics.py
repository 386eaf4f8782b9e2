"""The worker's latency histograms, as Prometheus metrics (when prometheus-client is installed):

- ``depcache_celery_publish_to_invalidated_seconds{manager}``: from an event's publication
  (the ``x-depcache-published-at`` header ``emit`` stamps, else the AMQP ``timestamp``, whole
  seconds) to its invalidation on that manager, retries included (the hand-off carries the
  time along);
- ``depcache_celery_apply_seconds{manager}``: how long one manager took to apply one share
  (one invalidation of a batch's dependencies, or a ``depcache.invalidate`` task's);
- ``depcache_celery_batch_seconds``: from a batch's routing to its acknowledgement.

They live in prometheus-client's default registry; with its multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``; the ready-made worker sets one up when it serves metrics), the
observations of prefork pool children are added up too (see
:mod:`depcache_celery.worker.monitoring`). Observing never raises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

__all__ = [
    "METRIC_NAMES",
    "observe_apply",
    "observe_batch",
    "observe_invalidated",
    "prepare",
]

logger = logging.getLogger(__name__)

METRIC_NAMES = (
    "depcache_celery_publish_to_invalidated_seconds",
    "depcache_celery_apply_seconds",
    "depcache_celery_batch_seconds",
)
"""The names of the histograms this module exports."""

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
LATENCY_BUCKETS += (30.0, 60.0, 300.0, 1800.0, 3600.0)

_lock = threading.Lock()
_histograms: dict[str, Any] = {}
_children: dict[tuple[str, str], Any] = {}
"""(histogram name, manager) -> its labelled child: ``labels()`` costs more than ``observe()``
and runs once per manager per share."""
_unavailable: list[bool] = []
_histogram_class: list[Any] = []


def prepare() -> None:
    """Import prometheus-client now (once), so that processing a message never imports a module.

    :func:`depcache_celery.install` and every :class:`~depcache_celery.worker.batch.BatchProcessor`
    call it. It is not done when this module is imported: prometheus-client chooses between
    its single-process and multiprocess modes when it is imported, and the ready-made worker sets
    ``PROMETHEUS_MULTIPROC_DIR`` after importing this package."""
    if _histogram_class or _unavailable:
        return
    with _lock:
        if _histogram_class or _unavailable:
            return
        try:
            from prometheus_client import Histogram  # noqa: PLC0415 - see above
        except ImportError:  # pragma: no cover - prometheus-client is optional
            _unavailable.append(True)
        else:
            _histogram_class.append(Histogram)


def _histogram(name: str) -> Any:
    """The histogram ``name`` (made on first use), or None without prometheus-client."""
    found = _histograms.get(name)
    if found is not None or _unavailable:
        return found
    prepare()
    with _lock:
        if name in _histograms or _unavailable:
            return _histograms.get(name)
        [Histogram] = _histogram_class
        docs = {
            METRIC_NAMES[0]: ("From an event's publication to its invalidation on a manager.",),
            METRIC_NAMES[1]: ("How long a manager took to apply one share.",),
            METRIC_NAMES[2]: ("From a batch's routing to its acknowledgement.",),
        }
        labels = () if name == METRIC_NAMES[2] else ("manager",)
        _histograms[name] = Histogram(name, docs[name][0], labels, buckets=LATENCY_BUCKETS)
        return _histograms[name]


def _child(name: str, manager: str) -> Any:
    """The child of histogram ``name`` labelled ``manager`` (None without prometheus-client)."""
    child = _children.get((name, manager))
    if child is None:
        histogram = _histogram(name)
        if histogram is None:
            return None
        child = _children[(name, manager)] = histogram.labels(manager)
    return child


def observe_invalidated(manager: str, published: Iterable[float | None], now: float = 0) -> None:
    """The events published at ``published`` (Unix seconds; None: unknown) are invalidated on
    ``manager`` now."""
    try:
        child = _child(METRIC_NAMES[0], manager)
        if child is None:
            return
        now = now or time.time()
        for stamp in published:
            if stamp is not None:
                child.observe(max(0.0, now - stamp))
    except Exception:
        logger.exception("depcache_celery: could not observe a latency")


def observe_apply(manager: str, seconds: float) -> None:
    """``manager`` applied one share in ``seconds``."""
    try:
        child = _child(METRIC_NAMES[1], manager)
        if child is not None:
            child.observe(seconds)
    except Exception:
        logger.exception("depcache_celery: could not observe a latency")


def observe_batch(seconds: float) -> None:
    """A batch was settled ``seconds`` after it was routed."""
    try:
        histogram = _histogram(METRIC_NAMES[2])
        if histogram is not None:
            histogram.observe(seconds)
    except Exception:
        logger.exception("depcache_celery: could not observe a latency")
