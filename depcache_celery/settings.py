"""Settings of depcache_celery, read from a Celery app's configuration with environment fallbacks.

Each setting is an ``app.conf`` key; when the app does not set it, the environment variable of
the same name in upper case is read; else the default applies.

``app.conf`` key (environment variable), default: meaning

- ``depcache_exchange`` (``DEPCACHE_EXCHANGE``), ``depcache.events``: the durable topic exchange
  producers publish events to.
- ``depcache_queue`` (``DEPCACHE_QUEUE``), ``depcache.events.worker``: the durable queue the
  worker consumes events from.
- ``depcache_binding_keys`` (``DEPCACHE_BINDING_KEYS``, comma-separated), ``["#"]``: the
  routing-key patterns binding that queue to the exchange.
- ``depcache_dead_letter_queue`` (``DEPCACHE_DEAD_LETTER_QUEUE``), ``depcache.events.dead``: the
  durable queue malformed messages, and failed shares past their retry age, go to.
- ``depcache_max_message_bytes`` (``DEPCACHE_MAX_MESSAGE_BYTES``), ``65536``: larger messages are
  dead-lettered.
- ``depcache_prefetch_count`` (``DEPCACHE_PREFETCH_COUNT``), ``1000``: unacknowledged event
  messages the worker holds at once (so the largest batch, and the work in flight; larger
  batches cost less per event: see bench/README.md). Bounds what a crashed worker leaves to be
  delivered again and what it buffers (at most this many times ``depcache_max_message_bytes``).
- ``depcache_batch_window`` (``DEPCACHE_BATCH_WINDOW``), ``0.01`` on a Redis broker, else ``0``:
  seconds the worker waits after a message arrives for more to join its batch. A batch is also
  never smaller than what the broker delivered together, plus whatever arrived while the previous
  batch was being applied. RabbitMQ delivers many messages at once, so 0 batches bursts there;
  kombu's Redis transport delivers one message per event-loop turn, faster than a batch is
  applied, so without a window a burst would be applied one message at a time (hence the 10 ms
  default there: at most 10 ms more latency per event, for batches of many messages). Set it
  (0 included) to override the default.
- ``depcache_shutdown_timeout`` (``DEPCACHE_SHUTDOWN_TIMEOUT``), ``10``: seconds the worker, when
  it stops or loses its broker connection, waits for the batches still being applied (a manager
  that hangs) before it leaves them unacknowledged for the broker to deliver again; 0 does not
  wait.
- ``depcache_retry_backoff_max`` (``DEPCACHE_RETRY_BACKOFF_MAX``), ``60``: seconds, the longest
  wait between two retries of a failed manager's share (1, 2, 4, ... up to it).
- ``depcache_retry_max_age`` (``DEPCACHE_RETRY_MAX_AGE``), ``3600``: seconds a failed share is
  retried for before it is dead-lettered.
- ``depcache_queue_expires`` (``DEPCACHE_QUEUE_EXPIRES``), unset: seconds the worker's queue may
  stay unused (no consumer) before RabbitMQ deletes it, with the events it holds (``x-expires``).
  For queues of workers that come and go; unset keeps the queue, and every event, forever.
- ``depcache_queue_max_length`` (``DEPCACHE_QUEUE_MAX_LENGTH``), unset: the most events the
  worker's queue holds (``x-max-length``); what happens to more is ``depcache_queue_overflow``.
- ``depcache_queue_overflow`` (``DEPCACHE_QUEUE_OVERFLOW``), ``reject-publish``: with a maximum
  length, ``reject-publish`` refuses new events (``emit`` raises :class:`EmitError`, nothing is
  lost silently) and ``drop-head`` drops the oldest ones (``x-overflow``).

- ``depcache_tracing`` (``DEPCACHE_TRACING``), ``false``: make OpenTelemetry spans of every
  batch, share and task, and of the cache's invalidations (needs ``depcache[otel]`` and a
  ``TracerProvider`` set up, e.g. in a ``DEPCACHE_SETUP`` module; see
  :mod:`depcache_celery.tracing`).

RabbitMQ refuses to declare an existing queue with other arguments (``PRECONDITION_FAILED``):
changing the last three for an existing queue means deleting it first (or a policy, see the
README). The Redis transport ignores them.

A bad value raises :class:`depcache.ConfigError` naming the key or variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import depcache

__all__ = ["DEFAULT_BROKER_URL", "OVERFLOW_POLICIES", "REDIS_BATCH_WINDOW", "Settings"]

REDIS_BATCH_WINDOW = 0.01
"""The default ``depcache_batch_window`` on a Redis broker, seconds."""

DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672//"
"""The broker when ``CELERY_BROKER_URL`` is unset, for the ready-made worker, ``emit`` on an app
without a broker (Celery's own default) and the ``depcache`` command alike."""

OVERFLOW_POLICIES = ("reject-publish", "drop-head")
"""The values of ``depcache_queue_overflow``."""

T = TypeVar("T")


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise depcache.ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _keys(name: str, value: object) -> tuple[str, ...]:
    items: list[object]
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise depcache.ConfigError(f"{name} must be a list of routing-key patterns, got {value!r}")
    if not items or any(not isinstance(item, str) or not item for item in items):
        raise depcache.ConfigError(f"{name} must hold non-empty routing-key patterns: {value!r}")
    return tuple(str(item) for item in items)


def _overflow(name: str, value: object) -> str:
    if value not in OVERFLOW_POLICIES:
        raise depcache.ConfigError(
            f"{name} must be one of {', '.join(OVERFLOW_POLICIES)}, got {value!r}"
        )
    return str(value)


def _bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise depcache.ConfigError(f"{name} must be true or false, got {value!r}")


def _number(kind: Callable[[str], T], *, zero: bool = False) -> Callable[[str, object], T]:
    what = "a number >= 0" if zero else "a positive number"

    def convert(name: str, value: object) -> T:
        try:
            number = kind(value) if isinstance(value, str) else value
        except ValueError:
            raise depcache.ConfigError(f"{name} must be {what}, got {value!r}") from None
        if (
            isinstance(number, bool)
            or not isinstance(number, (int, float))
            or number < 0
            or (number == 0 and not zero)
        ):
            raise depcache.ConfigError(f"{name} must be {what}, got {value!r}")
        return number  # type: ignore[return-value]  # int or float as asked

    return convert


@dataclass(frozen=True)
class Settings:
    """The resolved settings (see the module's table). ``batch_window`` is None when not set:
    :meth:`batch_window_for` gives the default for the broker's transport."""

    exchange: str = "depcache.events"
    queue: str = "depcache.events.worker"
    binding_keys: tuple[str, ...] = ("#",)
    dead_letter_queue: str = "depcache.events.dead"
    max_message_bytes: int = 65536
    prefetch_count: int = 1000
    batch_window: float | None = None
    retry_backoff_max: float = 60.0
    retry_max_age: float = 3600.0
    shutdown_timeout: float = 10.0
    queue_expires: float | None = None
    queue_max_length: int | None = None
    queue_overflow: str = "reject-publish"
    tracing: bool = False

    def batch_window_for(self, driver_type: str) -> float:
        """The batch window on a broker whose kombu transport has ``driver_type`` (``"amqp"``,
        ``"redis"``, ...): the setting, else :data:`REDIS_BATCH_WINDOW` on Redis and 0
        elsewhere."""
        if self.batch_window is not None:
            return self.batch_window
        return REDIS_BATCH_WINDOW if driver_type == "redis" else 0.0

    def queue_arguments(self) -> dict[str, object]:
        """The RabbitMQ arguments of the worker's queue: expiry and length policy, when set
        (none by default: the queue keeps every event)."""
        arguments: dict[str, object] = {}
        if self.queue_expires is not None:
            arguments["x-expires"] = max(1, round(self.queue_expires * 1000))
        if self.queue_max_length is not None:
            arguments["x-max-length"] = self.queue_max_length
            arguments["x-overflow"] = self.queue_overflow
        return arguments

    @classmethod
    def from_conf(
        cls, conf: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Resolve every setting from ``conf`` (e.g. ``app.conf``), then ``environ``, then the
        default."""
        conf = conf if conf is not None else {}
        environ = environ if environ is not None else os.environ
        converters: dict[str, Callable[[str, object], Any]] = {
            "exchange": _text,
            "queue": _text,
            "binding_keys": _keys,
            "dead_letter_queue": _text,
            "max_message_bytes": _number(int),
            "prefetch_count": _number(int),
            "batch_window": _number(float, zero=True),
            "retry_backoff_max": _number(float),
            "retry_max_age": _number(float),
            "shutdown_timeout": _number(float, zero=True),
            "queue_expires": _number(float),
            "queue_max_length": _number(int),
            "queue_overflow": _overflow,
            "tracing": _bool,
        }
        values: dict[str, Any] = {}
        for attr, convert in converters.items():
            key = f"depcache_{attr}"
            value = conf.get(key)
            if value is not None:
                values[attr] = convert(key, value)
            elif environ.get(key.upper()):
                values[attr] = convert(key.upper(), environ[key.upper()])
        return cls(**values)
