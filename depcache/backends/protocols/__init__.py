"""The storage protocols: what each Redis topology runs, written once, without I/O.

A protocol method is a generator (:data:`~depcache.backends.runners.Steps`) that yields batches
of commands and receives their replies; the runners in ``backends/runners.py`` send each batch
as one round trip, with blocking or asyncio clients. The backends in ``redis_backend.py`` pair a
protocol with a runner; they differ only in ``await``.

* ``standalone.py``: one server, one atomic script per operation (``lua/``).
* ``cluster.py``: Redis Cluster, where the entry, the epoch and each dependency live in
  different slots: short protocols of single-slot steps.
* ``locks.py``: the cross-process stampede lock, the same on both.
"""

from __future__ import annotations

from .cluster import ClusterProtocol
from .layout import Layout
from .locks import LockSteps
from .standalone import StandaloneProtocol

__all__ = ["ClusterProtocol", "Layout", "LockSteps", "StandaloneProtocol"]
