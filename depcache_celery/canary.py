"""The canary: prove that an event goes through the bus and the worker to every manager.

:func:`check` writes a probe entry on every given manager (key ``depcache.probe:<id>``, depending
on ``depcache.probe:<id>``), emits one event (``depcache.probe`` by default) carrying that
dependency, then watches the entries: each manager whose entry is gone within the timeout was
reached, with the latency from the publication; the others were missed. ``depcache check`` runs
it with the worker's own configuration (``CELERY_BROKER_URL``, ``DEPCACHE_SETUP``,
``DEPCACHE_EXCHANGE``), which makes it a healthcheck for docker-compose or Kubernetes.

The worker's queue must be bound to the probe's routing key (the default binding ``#`` is).
Probe entries live at most ``timeout`` plus a minute, and are deleted when the check ends.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import depcache

__all__ = ["PROBE_EVENT", "CheckReport", "TargetResult", "check"]

PROBE_EVENT = "depcache.probe"
"""The event name (and routing key) of a probe."""

DEFAULT_TIMEOUT = 30.0


@dataclass
class TargetResult:
    """One manager's outcome: ``latency`` seconds from publication to the entry being gone,
    or None when it was missed (``error`` says why, when something failed)."""

    manager: str
    where: str
    latency: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the worker invalidated the probe on this manager in time."""
        return self.latency is not None


@dataclass
class CheckReport:
    """The outcome of :func:`check`."""

    probe_id: str
    timeout: float
    targets: list[TargetResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every manager was reached (and there was at least one)."""
        return bool(self.targets) and all(t.ok for t in self.targets)


def _where(manager: depcache.CacheManager) -> str:
    return str(getattr(manager.config, "safe_url", "memory"))


def check(
    managers: Mapping[str, depcache.CacheManager],
    send: Callable[[str, list[str]], None],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    poll: float = 0.01,
) -> CheckReport:
    """Probe ``managers`` through the bus: ``send(probe_id, dependencies)`` must publish the
    probe event (e.g. with :func:`depcache_celery.emit`); raises what it raises.

    Returns the per-manager outcome; never raises for a manager (its error is reported)."""
    probe_id = f"probe-{uuid.uuid4().hex}"
    dependency = f"{PROBE_EVENT}:{probe_id}"
    key = dependency
    report = CheckReport(probe_id, timeout)
    waiting: dict[str, TargetResult] = {}
    for name, manager in sorted(managers.items()):
        result = TargetResult(name, _where(manager))
        report.targets.append(result)
        try:
            manager.set(key, time.time(), ttl=timeout + 60, dependencies={dependency})
        except depcache.DepCacheError as exc:
            result.error = f"cannot write the probe entry: {exc}"
            continue
        waiting[name] = result
    if not waiting:
        return report
    sent = time.monotonic()
    try:
        send(probe_id, [dependency])
        deadline = sent + timeout
        while waiting and time.monotonic() < deadline:
            for name in list(waiting):
                try:
                    gone = not managers[name].exists(key)
                except depcache.DepCacheError as exc:
                    waiting[name].error = f"cannot read the probe entry: {exc}"
                    continue
                if gone:
                    waiting.pop(name).latency = time.monotonic() - sent
            if waiting:
                time.sleep(poll)
        for result in waiting.values():
            result.error = result.error or f"the probe entry is still there after {timeout:g} s"
    finally:
        for name in waiting:
            with contextlib.suppress(depcache.DepCacheError):  # it expires by itself
                managers[name].delete(key)
    return report
