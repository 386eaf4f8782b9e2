"""OpenTelemetry spans of the bus: an event's path from ``emit`` to every manager, as one trace.

Off until :func:`enable` (the worker calls it when ``depcache_tracing`` is true; it also enables
:mod:`depcache.tracing` for the cache's own spans). Then, with the tracer of the
instrumentation scope ``depcache_celery`` and the global propagator (W3C ``traceparent``):

- ``emit`` makes a ``PRODUCER`` span ``publish <exchange>`` and carries its context in the
  message's headers (``traceparent``, ``tracestate``), so it survives any broker and any
  producer that copies headers;
- the worker makes one ``CONSUMER`` span ``process <queue>`` per batch: the child of the first
  message's context (with one event, the trace goes on from the producer's) and linked to
  every message's, as the messaging semantic conventions say for batches;
- each manager's share of a batch is a span ``depcache.share <manager>``, the child of the
  batch's span (in the manager's lane thread), whose child is the manager's invalidation span
  (``depcache.invalidate <manager>``, from :mod:`depcache.tracing`);
- a share handed to the retry path carries the context in the task's headers, and the
  ``depcache.invalidate`` / ``depcache.event`` tasks make ``CONSUMER`` spans ``process
  <task name>`` continuing it.

Attributes follow the messaging conventions (``messaging.system``,
``messaging.operation.type``/``.name``, ``messaging.destination.name``,
``messaging.rabbitmq.destination.routing_key``, ``messaging.message.id``,
``messaging.batch.message_count``) plus ``depcache.*`` ones (event ids, dependency count,
managers, entries removed). Nothing here raises: a tracing failure is logged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any

import depcache.tracing

__all__ = [
    "TRACER_NAME",
    "disable",
    "enable",
    "enabled",
    "extract",
    "fail",
    "inject",
    "messaging_system",
    "span",
]

logger = logging.getLogger(__name__)

TRACER_NAME = "depcache_celery"
_HEADERS = ("traceparent", "tracestate")


class _State:
    __slots__ = ("on", "tracer")

    def __init__(self) -> None:
        self.on = False
        self.tracer: Any = None


_state = _State()
_lock = threading.Lock()


def enable(tracer_provider: Any = None) -> None:
    """Make the spans of the module's docstring, and the cache's (:func:`depcache.tracing.enable`).

    Raises:
        ImportError: opentelemetry-api is not installed.
    """
    with _lock:
        depcache.tracing.enable(tracer_provider)
        from opentelemetry import trace  # noqa: PLC0415

        _state.tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        _state.on = True


def disable() -> None:
    """Stop making spans (the cache's too)."""
    with _lock:
        _state.on = False
        depcache.tracing.disable()


def enabled() -> bool:
    """Whether :func:`enable` was called (and not undone)."""
    return _state.on


def messaging_system(transport: str) -> str:
    """The ``messaging.system`` of a kombu transport name (``amqp`` -> ``rabbitmq``)."""
    return {"amqp": "rabbitmq", "pyamqp": "rabbitmq", "redis": "redis"}.get(transport, transport)


def inject(headers: MutableMapping[str, Any]) -> None:
    """Put the current trace context into ``headers`` (nothing while tracing is off)."""
    if not _state.on:
        return
    try:
        from opentelemetry import propagate  # noqa: PLC0415

        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        headers.update({k: v for k, v in carrier.items() if k in _HEADERS})
    except Exception:
        logger.exception("depcache_celery: could not inject the trace context")


def extract(headers: Mapping[str, Any] | None) -> Any:
    """The trace context carried by ``headers`` (None when there is none, or tracing is off)."""
    if not _state.on or not headers:
        return None
    carrier = {k: v for k, v in headers.items() if k in _HEADERS and isinstance(v, str)}
    if "traceparent" not in carrier:
        return None
    try:
        from opentelemetry import propagate  # noqa: PLC0415

        return propagate.extract(carrier)
    except Exception:
        logger.exception("depcache_celery: could not read a trace context")
        return None


def start(
    name: str,
    kind: str,
    attributes: Mapping[str, Any],
    *,
    parent: Any = None,
    links: Sequence[Any] = (),
) -> Any:
    """Start a span (not made current): ``kind`` is a ``SpanKind`` name, ``parent`` a context
    (None: the current one), ``links`` contexts to link. None while tracing is off."""
    if not _state.on:
        return None
    try:
        from opentelemetry import trace  # noqa: PLC0415

        linked = []
        for context in links:
            span_context = trace.get_current_span(context).get_span_context()
            if span_context.is_valid:
                linked.append(trace.Link(span_context))
        return _state.tracer.start_span(
            name,
            context=parent,
            kind=trace.SpanKind[kind],
            attributes=dict(attributes),
            links=linked,
        )
    except Exception:
        logger.exception("depcache_celery: could not start a span")
        return None


def end(span: Any, attributes: Mapping[str, Any] | None = None, error: str | None = None) -> None:
    """Set ``attributes`` on ``span`` (from :func:`start`; None is fine) and end it, with an
    error status when ``error`` says what failed."""
    if span is None:
        return
    try:
        from opentelemetry import trace  # noqa: PLC0415

        for key, value in (attributes or {}).items():
            if value is not None:
                span.set_attribute(key, value)
        if error is not None:
            span.set_status(trace.StatusCode.ERROR, error)
        span.end()
    except Exception:
        logger.exception("depcache_celery: could not end a span")


def fail(span: Any, error: BaseException) -> None:
    """Record ``error`` on ``span`` (None is fine) and give it an error status."""
    if span is None:
        return
    try:
        from opentelemetry import trace  # noqa: PLC0415

        span.record_exception(error)
        span.set_status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
    except Exception:
        logger.exception("depcache_celery: could not record an error on a span")


def context_of(span: Any) -> Any:
    """A context whose current span is ``span`` (None for None)."""
    if span is None:
        return None
    from opentelemetry import trace  # noqa: PLC0415

    return trace.set_span_in_context(span)


@contextlib.contextmanager
def span(
    name: str,
    kind: str,
    attributes: Mapping[str, Any],
    *,
    parent: Any = None,
    links: Sequence[Any] = (),
) -> Iterator[Any]:
    """:func:`start` a span and make it current for the block; ends it (with an error status
    when the block raises). Yields the span, or None while tracing is off."""
    started = start(name, kind, attributes, parent=parent, links=links)
    if started is None:
        yield None
        return
    from opentelemetry import context as otel_context  # noqa: PLC0415

    token = otel_context.attach(context_of(started))
    error: str | None = None
    try:
        yield started
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        started.record_exception(exc)
        raise
    finally:
        otel_context.detach(token)
        end(started, error=error)
