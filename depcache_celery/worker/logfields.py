"""The fields of the worker's log lines, passed as ``logging`` ``extra=``.

Every batch, ``depcache.invalidate`` / ``depcache.event`` task, retry and dead letter logs one
line whose record carries these attributes, so a JSON formatter (python-json-logger, structlog's
stdlib bridge) shows them as fields and a plain formatter is unchanged:

| attribute | type | |
|---|---|---|
| ``event_ids`` | list of strings | the bus messages' ``id`` fields (or task ids), in order |
| ``routing_keys`` | list of strings | the bus messages' routing keys (the event names) |
| ``dependency_count`` | int | dependencies invalidated (after de-duplication) |
| ``managers`` | list of strings | the cache managers involved |
| ``duration_ms`` | float | from receiving the batch (or starting the task) to this line |

plus, where they apply, ``removed`` (entries, by manager), ``failed`` (manager names),
``kind`` and ``reason`` (dead letters), ``attempt`` (retries), ``task_id`` and ``outcome``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["FIELDS", "fields"]

FIELDS = ("event_ids", "routing_keys", "dependency_count", "managers", "duration_ms")
"""The attributes every line of the worker's batches, tasks, retries and dead letters has."""


def fields(
    *,
    event_ids: Iterable[str | None] = (),
    routing_keys: Iterable[str | None] = (),
    dependency_count: int = 0,
    managers: Iterable[str] = (),
    duration: float | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The ``extra=`` mapping of one log line (``duration`` in seconds; ``None`` ids and keys
    are left out)."""
    out: dict[str, Any] = {
        "event_ids": [str(i) for i in event_ids if i is not None],
        "routing_keys": [str(k) for k in routing_keys if k is not None],
        "dependency_count": dependency_count,
        "managers": sorted(managers),
        "duration_ms": round(duration * 1000, 3) if duration is not None else None,
    }
    out.update(more)
    return out
