"""OpenTelemetry spans of the cache: ``depcache.tracing.enable()`` (``pip install
"depcache[otel]"``; configure a ``TracerProvider`` and exporter with the OpenTelemetry SDK as
for any library).

Off until enabled, and free of cost again when :func:`disable` d (see :mod:`depcache.observe`).
Once enabled, with the tracer of the instrumentation scope ``depcache``:

- every decorated call is a span ``depcache <module.qualname>`` (kind ``INTERNAL``, the child
  of whatever span is current, the parent of the nested cached calls and of the Redis client's
  spans when redis-py is instrumented too), with ``depcache.manager``, ``depcache.function``,
  ``depcache.result`` (``hit`` or ``miss``), ``depcache.stored``, ``depcache.store_refused``
  (the stale-set guard refused the result) and ``depcache.errors``; a call that raised has
  the error recorded and an error status;
- every invalidation of a manager is a span ``depcache.invalidate <manager>`` (kind
  ``CLIENT``: it is one request to that manager's Redis deployment) with ``depcache.manager``,
  ``depcache.prefix``, ``depcache.dependencies.count``, ``depcache.removed`` and the Redis
  semantic conventions' ``db.system.name`` (``redis``), ``db.namespace`` (the database),
  ``server.address`` and ``server.port``.

depcache_celery adds the bus: ``emit`` carries the trace context in the message headers (W3C
``traceparent``), and the worker's batch and each manager's share are spans of the same trace
(see :mod:`depcache_celery.tracing`).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from . import observe

__all__ = ["TRACER_NAME", "TracingInstrument", "disable", "enable", "enabled", "redis_attributes"]

TRACER_NAME = "depcache"


def redis_attributes(config: object) -> dict[str, Any]:
    """The semantic conventions' attributes of the Redis deployment a configuration names (no
    credentials): ``db.system.name``, ``db.namespace``, ``server.address``, ``server.port``."""
    url = getattr(config, "url", None)
    if not isinstance(url, str):
        return {"db.system.name": "depcache.memory"}
    hostpart = url.partition("://")[2].rpartition("@")[2]  # never the user info
    parts = urlsplit("redis://" + hostpart)
    out: dict[str, Any] = {"db.system.name": "redis"}
    database = parts.path.strip("/")
    out["db.namespace"] = database or "0"
    try:
        if parts.hostname:
            out["server.address"] = parts.hostname
        out["server.port"] = parts.port or 6379
    except ValueError:  # a port that is not a number: leave it out
        pass
    return out


class TracingInstrument:
    """The :class:`depcache.observe.Instrument` that makes the module's spans."""

    def __init__(self, tracer_provider: Any = None) -> None:
        try:
            from opentelemetry import trace  # noqa: PLC0415
        except ImportError as exc:
            raise ImportError(
                'depcache.tracing needs opentelemetry-api: pip install "depcache[otel]"'
            ) from exc
        from opentelemetry import context  # noqa: PLC0415

        self._trace = trace
        self._context = context
        self.tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)

    def _start(self, handles: dict[int, Any], name: str, kind: Any, attrs: dict[str, Any]) -> None:
        span = self.tracer.start_span(name, kind=kind, attributes=attrs)
        token = self._context.attach(self._trace.set_span_in_context(span))
        handles[id(self)] = (span, token)

    def _end(self, handles: dict[int, Any], error: BaseException | None) -> Any:
        span, token = handles.pop(id(self))
        self._context.detach(token)
        if error is not None:
            span.record_exception(error)
            span.set_status(self._trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
        return span

    def call_started(self, probe: observe.CallProbe) -> None:
        """Start the call's span and make it current."""
        attrs = {"depcache.manager": probe.manager, "depcache.function": probe.function}
        self._start(
            probe.handles, f"depcache {probe.function}", self._trace.SpanKind.INTERNAL, attrs
        )

    def call_finished(self, probe: observe.CallProbe, error: BaseException | None) -> None:
        """Say what happened and end the span."""
        span = self._end(probe.handles, error)
        if probe.result is not None:
            span.set_attribute("depcache.result", probe.result)
        span.set_attribute("depcache.stored", probe.stored)
        span.set_attribute("depcache.store_refused", probe.refused)
        if probe.errors:
            span.set_attribute("depcache.errors", probe.errors)
        span.end()

    def invalidation_started(self, probe: observe.InvalidationProbe) -> None:
        """Start the invalidation's span and make it current."""
        attrs = {
            "depcache.manager": probe.manager,
            "depcache.prefix": probe.prefix,
            "depcache.dependencies.count": len(probe.dependencies),
            "db.operation.name": "invalidate",
            **redis_attributes(probe.config),
        }
        name = f"depcache.invalidate {probe.manager}"
        self._start(probe.handles, name, self._trace.SpanKind.CLIENT, attrs)

    def invalidation_finished(
        self, probe: observe.InvalidationProbe, error: BaseException | None
    ) -> None:
        """Record what it removed and end the span."""
        span = self._end(probe.handles, error)
        if error is None:
            span.set_attribute("depcache.removed", probe.removed)
        span.end()


_lock = threading.Lock()
_instrument: list[TracingInstrument] = []


def enable(tracer_provider: Any = None) -> TracingInstrument:
    """Start making spans, with ``tracer_provider`` (default OpenTelemetry's global one); once
    enabled, enabling again returns the same instrument.

    Raises:
        ImportError: opentelemetry-api is not installed.
    """
    with _lock:
        if not _instrument:
            _instrument.append(TracingInstrument(tracer_provider))
        observe.install(_instrument[0])
        return _instrument[0]


def disable() -> None:
    """Stop making spans."""
    with _lock:
        if _instrument:
            observe.uninstall(_instrument.pop())


def enabled() -> bool:
    """Whether the tracing instrument is installed."""
    return any(isinstance(i, TracingInstrument) for i in observe.installed())
