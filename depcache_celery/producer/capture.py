"""What the producer sends, recorded instead of sent while a capture is open.

:func:`depcache_celery.testing.capture_emits` opens one. The senders (``emit``, ``aemit``,
``invalidate_later`` and all built on them) offer each send to :func:`record` (while
:func:`capturing`) at the moment it would go to the broker: after the commit when it was
deferred, never when a rollback dropped it. Captures are process-wide, since a send may run in
another thread (``aemit``'s, an executor's, a commit hook's).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["Emitted", "EmittedEvent", "EmittedInvalidation", "capturing", "record", "recording"]


@dataclass(frozen=True)
class EmittedEvent:
    """A bus event that would have been published (by ``emit``, ``aemit``, or
    ``publish_database_writes``): the message's fields, as the worker would read them."""

    event: str
    data: dict[str, Any]
    id: str
    dependencies: list[str] | None = None

    @classmethod
    def from_body(cls, body: bytes) -> EmittedEvent:
        """The event a bus message's body (built by ``build_event``) holds."""
        message = json.loads(body)
        return cls(message["event"], message["data"], message["id"], message.get("dependencies"))


@dataclass(frozen=True)
class EmittedInvalidation:
    """A ``depcache.invalidate`` task that would have been sent (by ``invalidate_later``,
    ``@invalidates`` or ``forward_invalidations``): its dependencies, the managers named (None:
    every manager of the worker) and the task id."""

    dependencies: list[str]
    managers: list[str] | None
    task_id: str


Emitted = EmittedEvent | EmittedInvalidation

_sinks: list[list[Emitted]] = []
_lock = threading.Lock()


def capturing() -> bool:
    """True while a capture is open (check it before building what :func:`record` takes)."""
    return bool(_sinks)


def record(item: Emitted) -> bool:
    """Record ``item`` in every open capture; False when none is open (then send it)."""
    if not _sinks:  # the common case, without the lock
        return False
    with _lock:
        for sink in _sinks:
            sink.append(item)
        return bool(_sinks)


@contextmanager
def recording() -> Iterator[list[Emitted]]:
    """Open a capture: the list receives every send until the block exits (nested captures each
    receive them all)."""
    sink: list[Emitted] = []
    with _lock:
        _sinks.append(sink)
    try:
        yield sink
    finally:
        with _lock:
            index = next(i for i, open_sink in enumerate(_sinks) if open_sink is sink)
            del _sinks[index]
