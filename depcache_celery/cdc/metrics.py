"""The CDC process's counters and gauges, optionally served as Prometheus metrics.

:class:`CdcMetrics` always keeps plain values (for logs and tests); with ``prometheus-client``
installed and a port given, :meth:`CdcMetrics.serve` exposes them on ``/metrics``:

- ``depcache_cdc_changes_total``: row changes read from the slot;
- ``depcache_cdc_transactions_total``: committed transactions read;
- ``depcache_cdc_events_published_total``: bus messages the broker confirmed;
- ``depcache_cdc_publish_failures_total``: failed publish attempts (each is retried);
- ``depcache_cdc_reconnects_total``: sessions started again after an error;
- ``depcache_cdc_bus_up``: 1 when the last publish succeeded, 0 while publishing fails;
- ``depcache_cdc_lag_bytes``: WAL from the slot's confirmed position to the server's current
  position (what is not yet confirmed);
- ``depcache_cdc_retained_wal_bytes``: WAL the server keeps for the slot;
- ``depcache_cdc_safe_wal_bytes``: WAL that may still be written before the server removes the
  slot's (``max_slot_wal_keep_size``); -1 when unlimited;
- ``depcache_cdc_confirmed_lsn``: the slot's confirmed position, as a number.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["COUNTERS", "GAUGES", "CdcMetrics"]

COUNTERS = ("changes", "transactions", "events_published", "publish_failures", "reconnects")
GAUGES = ("bus_up", "lag_bytes", "retained_wal_bytes", "safe_wal_bytes", "confirmed_lsn")


class CdcMetrics:
    """Thread-safe counters and gauges (see the module's table)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = dict.fromkeys((*COUNTERS, *GAUGES), 0.0)
        self._values["safe_wal_bytes"] = -1.0
        self._prometheus: dict[str, Any] = {}

    def add(self, name: str, amount: float = 1) -> None:
        """Increase counter ``name``."""
        with self._lock:
            self._values[name] += amount
            metric = self._prometheus.get(name)
        if metric is not None:
            metric.inc(amount)

    def set(self, name: str, value: float) -> None:
        """Set gauge ``name``."""
        with self._lock:
            self._values[name] = value
            metric = self._prometheus.get(name)
        if metric is not None:
            metric.set(value)

    def get(self, name: str) -> float:
        """The current value of ``name``."""
        with self._lock:
            return self._values[name]

    def snapshot(self) -> dict[str, float]:
        """Every value, by name."""
        with self._lock:
            return dict(self._values)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serve the metrics over HTTP on ``port`` (a registry of their own).

        Raises:
            ImportError: prometheus-client is not installed (``pip install
                "depcache[prometheus]"``).
        """
        from prometheus_client import (  # noqa: PLC0415 - an optional dependency
            CollectorRegistry,
            Counter,
            Gauge,
            start_http_server,
        )

        registry = CollectorRegistry()
        with self._lock:
            for name in COUNTERS:
                counter = Counter(f"depcache_cdc_{name}", name.replace("_", " "), registry=registry)
                counter.inc(self._values[name])
                self._prometheus[name] = counter
            for name in GAUGES:
                gauge = Gauge(f"depcache_cdc_{name}", name.replace("_", " "), registry=registry)
                gauge.set(self._values[name])
                self._prometheus[name] = gauge
        start_http_server(port, addr=addr, registry=registry)
