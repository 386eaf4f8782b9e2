"""Row changes gathered into bus events.

A :class:`ChangeBatch` collects the dependencies of the changes read since the last flush,
grouped by table and operation and de-duplicated, and turns them into bus messages
(:func:`depcache_celery.producer.emit.build_event`): one event ``<prefix>.<schema>.<table>.<op>``
per group, split into several when its dependencies would not fit in ``max_message_bytes``. The
batch also remembers what the flush must know: the transactions it holds (to wait for their
visibility) and the end of the last transaction it completed (how far the slot may be
confirmed once its events are on the bus).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..producer.emit import Event, build_event, split_dependencies
from .pgoutput import format_lsn

__all__ = ["SOURCE", "ChangeBatch"]

SOURCE = "depcache cdc"
"""The ``data.source`` of the events this package publishes."""

_ENVELOPE_BYTES = 1024  # room for the event name, data and id around the dependencies


@dataclass
class _Group:
    rows: int = 0
    dependencies: dict[str, None] = field(default_factory=dict)


class ChangeBatch:
    """The changes read since the last flush (see the module's docstring)."""

    def __init__(self, prefix: str, max_message_bytes: int) -> None:
        self.prefix = prefix
        self.max_message_bytes = max_message_bytes
        self.rows = 0
        self.xids: set[int] = set()
        self.end_lsn = 0
        self.last_lsn = 0
        self.started: float | None = None
        self._groups: dict[tuple[str, str, str], _Group] = {}

    def __bool__(self) -> bool:
        """True when the batch holds changes to publish."""
        return bool(self._groups)

    def add(self, schema: str, table: str, op: str, dependencies: Iterable[str]) -> None:
        """Add one row change (or one table of a ``TRUNCATE``)."""
        if self.started is None:
            self.started = time.monotonic()
        group = self._groups.get((schema, table, op))
        if group is None:
            group = self._groups[(schema, table, op)] = _Group()
        group.rows += 1
        for dep in dependencies:
            group.dependencies[dep] = None
        self.rows += 1

    def age(self) -> float:
        """Seconds since the first change was added (0 when empty)."""
        return 0.0 if self.started is None else time.monotonic() - self.started

    def events(self) -> list[Event]:
        """The bus messages of the batch, each under ``max_message_bytes``."""
        events: list[Event] = []
        lsn = format_lsn(self.end_lsn or self.last_lsn)
        budget = max(self.max_message_bytes - _ENVELOPE_BYTES, 256)
        for (schema, table, op), group in self._groups.items():
            name = f"{self.prefix}.{schema}.{table}.{op}"
            parts = split_dependencies(list(group.dependencies), budget)
            for index, deps in enumerate(parts):
                data: dict[str, object] = {
                    "source": SOURCE,
                    "schema": schema,
                    "table": table,
                    "op": op,
                    "rows": group.rows,
                    "lsn": lsn,
                }
                if len(parts) > 1:
                    data.update(part=index + 1, parts=len(parts))
                events.append(
                    build_event(
                        name,
                        data,
                        id=uuid.uuid4().hex,
                        dependencies=deps,
                        max_bytes=self.max_message_bytes,
                    )
                )
        return events
