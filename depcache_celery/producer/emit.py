"""Sending invalidations from app code: :func:`emit`, :func:`aemit` and :func:`invalidate_later`.

``emit("user.updated", {"id": 123})`` publishes the domain event as a bus message (see
:mod:`depcache_celery.worker.messages`) to the durable topic exchange (``depcache_exchange``) with
the event name as routing key, persistent, on the broker of a Celery app (``app=``, default Celery's
current app) or of ``broker_url=``. On RabbitMQ the broker confirms each message before
:func:`emit` returns (publisher confirms); a lost connection is retried (``retry_policy``). When
the broker cannot be reached in the end, :class:`EmitError` names it (without its password).

``invalidate_later("user:123")`` sends the ``depcache.invalidate`` task instead: no router, the
dependencies as given, on every manager of the worker (or those named).

All three check their input first (a clear ``TypeError``/``ValueError``), and inside a
transaction wait for the commit (see :mod:`depcache_celery.producer.deferral`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery._state import get_current_app
from kombu import Connection, Exchange, Producer
from kombu.pools import producers

import depcache

from .. import tracing
from ..bus import INVALIDATE_TASK, PUBLISHED_AT_HEADER, event_exchange, publish_properties
from ..settings import Settings
from . import capture
from .deferral import defer_or_send, try_defer

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "EmitError",
    "Event",
    "aemit",
    "build_event",
    "emit",
    "invalidate_later",
    "split_dependencies",
]

DEFAULT_RETRY_POLICY: dict[str, Any] = {
    "max_retries": 5,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 2,
}
"""kombu's retry policy for a publish whose connection was lost: 5 retries over about 6 s."""


class EmitError(depcache.DepCacheError):
    """The event could not be handed to the broker (after retries)."""


@dataclass(frozen=True)
class Event:
    """A checked event, ready to publish: its id, name and JSON body."""

    id: str
    event: str
    body: bytes


def _check_dependencies(dependencies: object, what: str) -> list[str]:
    if isinstance(dependencies, (str, bytes)) or not isinstance(dependencies, Iterable):
        raise TypeError(f"{what} must be a list of strings, got {dependencies!r}")
    deps = list(dependencies)
    for dep in deps:
        if not isinstance(dep, str) or not dep:
            raise ValueError(f"{what} must be non-empty strings, got {dep!r}")
    return deps


def _encode(event: str, message: dict[str, Any]) -> bytes:
    """The message as compact UTF-8 JSON; ValueError naming the event when it cannot be."""
    try:
        return json.dumps(
            message, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not text another service can read
        raise ValueError(f"event {event!r}: it holds text that is not valid Unicode") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"event {event!r}: data is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise ValueError(f"event {event!r}: data is nested too deeply") from None


def build_event(
    event: str,
    data: Mapping[str, Any] | None = None,
    *,
    id: str | None = None,  # the bus message's field
    dependencies: Sequence[str] | None = None,
    max_bytes: int | None = None,
) -> Event:
    """Check an event and make its bus message; what the worker would refuse is refused here.

    Raises:
        TypeError: ``event`` is not a string, ``data`` not a mapping with string keys, ``id``
            not a string, ``dependencies`` not a list of strings.
        ValueError: ``event`` is empty, ``data`` is not JSON-serialisable (the message names
            the value), or the message is over ``max_bytes``.
    """
    if not isinstance(event, str):
        raise TypeError(f"the event name must be a string, got {type(event).__name__}")
    if not event:
        raise ValueError("the event name must not be empty")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise TypeError(f"event {event!r}: data must be a mapping, got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str):
            raise TypeError(f"event {event!r}: data keys must be strings, got {key!r}")
    if id is None:
        id = uuid.uuid4().hex
    elif not isinstance(id, str) or not id:
        raise TypeError(f"event {event!r}: id must be a non-empty string, got {id!r}")
    message: dict[str, Any] = {"event": event, "data": dict(data), "id": id}
    if dependencies is not None:
        what = f"event {event!r}: dependencies"
        message["dependencies"] = _check_dependencies(dependencies, what)
    body = _encode(event, message)
    limit = max_bytes if max_bytes is not None else Settings().max_message_bytes
    if len(body) > limit:
        raise ValueError(
            f"event {event!r}: the message is {len(body)} bytes, over the limit of {limit} "
            "(depcache_max_message_bytes): the worker would dead-letter it"
        )
    return Event(id, event, body)


def split_dependencies(dependencies: Sequence[str], budget: int) -> list[list[str]]:
    """``dependencies`` in consecutive parts whose JSON stays under ``budget`` bytes (a
    dependency longer than that alone makes a part of its own), for events of several messages.
    """
    parts: list[list[str]] = [[]]
    size = 0
    for dep in dependencies:
        cost = len(json.dumps(dep, ensure_ascii=False).encode("utf-8")) + 1
        if parts[-1] and size + cost > budget:
            parts.append([])
            size = 0
        parts[-1].append(dep)
        size += cost
    return parts


# -- connections ----------------------------------------------------------------------------------
# templates for kombu's producer pools: one per app (dropped with it), one per broker URL
_app_connections: weakref.WeakKeyDictionary[Celery, Connection] = weakref.WeakKeyDictionary()
_url_connections: dict[str, Connection] = {}
_connections_lock = threading.Lock()
_CONFIRM = {"confirm_publish": True}


def _resolve_app(app: Celery | None) -> Celery:
    return app if app is not None else get_current_app()


def _connection(app: Celery | None, broker_url: str | None) -> tuple[Connection, Settings]:
    """A connection (a template for kombu's producer pool) with publisher confirms on, and the
    settings to publish with."""
    with _connections_lock:
        if broker_url is not None:
            settings = Settings.from_conf(app.conf if app is not None else None)
            conn = _url_connections.get(broker_url)
            if conn is None:
                conn = _url_connections[broker_url] = Connection(
                    broker_url, transport_options=_CONFIRM
                )
            return conn, settings
        celery_app = _resolve_app(app)
        conn = _app_connections.get(celery_app)
        if conn is None:
            conn = _app_connections[celery_app] = celery_app.connection_for_write(
                transport_options=_CONFIRM
            )
        return conn, Settings.from_conf(celery_app.conf)


def _publish(
    message: Event,
    app: Celery | None,
    broker_url: str | None,
    retry_policy: Mapping[str, Any],
) -> None:
    if capture.capturing() and capture.record(capture.EmittedEvent.from_body(message.body)):
        return  # an app's test captures what it emits (depcache_celery.testing)
    conn, settings = _connection(app, broker_url)
    exchange = event_exchange(settings)
    with tracing.span(
        f"publish {settings.exchange}",
        "PRODUCER",
        {
            "messaging.system": tracing.messaging_system(str(conn.transport_cls)),
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": settings.exchange,
            "messaging.rabbitmq.destination.routing_key": message.event,
            "messaging.message.id": message.id,
            "messaging.message.body.size": len(message.body),
        },
    ):
        _send(message, conn, settings, exchange, retry_policy)


def _send(
    message: Event,
    conn: Connection,
    settings: Settings,
    exchange: Exchange,
    retry_policy: Mapping[str, Any],
) -> None:
    now = time.time()
    headers: dict[str, Any] = {}
    tracing.inject(headers)  # the W3C trace context, while tracing is on
    try:
        with producers[conn].acquire(block=True, timeout=30) as producer:
            assert isinstance(producer, Producer)
            producer.publish(
                message.body,
                exchange=exchange,
                **publish_properties(message.event, message.id),
                timestamp=int(now),
                headers={PUBLISHED_AT_HEADER: now, **headers},
                declare=[exchange],  # a topic exchange, also on the Redis transport
                retry=True,
                retry_policy=dict(retry_policy),
            )
    except Exception as exc:
        if _nacked(exc):
            raise EmitError(
                f"the broker refused (nacked) event {message.event!r} (id {message.id}) on "
                f"exchange {settings.exchange!r} at {conn.as_uri()}: a queue is full or "
                "unavailable"
            ) from exc
        raise EmitError(
            f"could not publish event {message.event!r} (id {message.id}) to exchange "
            f"{settings.exchange!r} on {conn.as_uri()}: {type(exc).__name__}: {exc}"
        ) from exc


def _nacked(exc: BaseException) -> bool:
    """Whether the broker nacked the publish (a publisher confirm said no)."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "MessageNacked":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def emit(
    event: str,
    data: Mapping[str, Any] | None = None,
    *,
    id: str | None = None,  # the bus message's field
    dependencies: Sequence[str] | None = None,
    app: Celery | None = None,
    broker_url: str | None = None,
    retry_policy: Mapping[str, Any] | None = None,
) -> str:
    """Publish the domain event ``event`` with ``data`` to the bus; return its id.

    ``id`` defaults to a new UUID; ``dependencies`` are invalidated as well as what the
    worker's handlers map the event to. Sent on ``broker_url`` if given, else on the broker of
    ``app`` (default: Celery's current app); the exchange is that app's ``depcache_exchange``.
    Inside a transaction, sent after it commits (see :mod:`depcache_celery.producer.deferral`).

    Raises:
        TypeError, ValueError: bad input (see :func:`build_event`).
        EmitError: the broker did not take the message after retries.
    """
    message = build_event(event, data, id=id, dependencies=dependencies)
    policy = DEFAULT_RETRY_POLICY if retry_policy is None else retry_policy
    defer_or_send(lambda: _publish(message, app, broker_url, policy))
    return message.id


async def aemit(
    event: str,
    data: Mapping[str, Any] | None = None,
    *,
    id: str | None = None,  # the bus message's field
    dependencies: Sequence[str] | None = None,
    app: Celery | None = None,
    broker_url: str | None = None,
    retry_policy: Mapping[str, Any] | None = None,
) -> str:
    """:func:`emit` for asyncio: the publish runs in a worker thread, never blocking the loop."""
    message = build_event(event, data, id=id, dependencies=dependencies)
    policy = DEFAULT_RETRY_POLICY if retry_policy is None else retry_policy
    send = functools.partial(_publish, message, app, broker_url, policy)
    if not try_defer(send):  # deferral is decided in the caller's context
        await asyncio.to_thread(send)
    return message.id


def invalidate_later(
    *dependencies: str,
    managers: Sequence[str] | None = None,
    app: Celery | None = None,
) -> str:
    """Send the ``depcache.invalidate`` task for ``dependencies``; return the task id.

    The worker invalidates them on every registered manager (or those named in ``managers``).
    Inside a transaction, sent after it commits.

    Raises:
        TypeError, ValueError: no dependency, or one that is not a non-empty string; ``managers``
            not a list of names.
    """
    deps = _check_dependencies(dependencies, "dependencies")
    if not deps:
        raise ValueError("invalidate_later() needs at least one dependency")
    names = None if managers is None else _check_dependencies(managers, "managers")
    task_id = uuid.uuid4().hex
    celery_app = _resolve_app(app)

    def send() -> None:
        if capture.capturing() and capture.record(
            capture.EmittedInvalidation(list(deps), names, task_id)
        ):
            return  # an app's test captures what it emits (depcache_celery.testing)
        headers: dict[str, Any] = {}
        tracing.inject(headers)  # the worker's task span continues this trace
        celery_app.send_task(
            INVALIDATE_TASK, args=[deps, names], task_id=task_id, headers=headers or None
        )

    defer_or_send(send)
    return task_id
