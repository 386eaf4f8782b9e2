"""Publishing the writes of instrumented databases on the bus.

::

    import depcache_celery
    depcache_celery.publish_database_writes(app)     # once, at start-up

After every commit of a connection instrumented by ``depcache.db`` (SQLAlchemy's
``instrument(engine)``, the Django app), the dependencies it invalidated in this process are
also published to the bus as the event ``db.committed`` (``{"database": ..., "tables": [...]}``
with ``dependencies``), so every worker invalidates them on the managers of every deployment
and other services can subscribe to the routing key. Core depcache does not import Celery:
this registers a :func:`depcache.db.on_committed_writes` callback.

The publish runs after the commit, in the committing thread (a worker thread for asyncio), and
is not deferred again. A transaction whose dependencies do not fit one message is split into
several. A publish that fails is logged (the commit cannot be undone); for a guarantee that
survives a crash between the commit and the publish, run ``depcache cdc``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from celery import Celery

from depcache.db import CommittedWrites, on_committed_writes, remove_committed_writes_hook

from ..settings import Settings
from .emit import DEFAULT_RETRY_POLICY, _publish, build_event, split_dependencies

__all__ = ["DATABASE_EVENT", "publish_database_writes", "stop_publishing_database_writes"]

logger = logging.getLogger(__name__)

#: the event (and routing key) of committed database writes
DATABASE_EVENT = "db.committed"
_TABLE = re.compile(r"^db:([^:]+)")
_published: dict[tuple[int, str | None], Callable[[CommittedWrites], None]] = {}


def publish_database_writes(
    app: Celery | None = None, *, broker_url: str | None = None
) -> Callable[[CommittedWrites], None]:
    """Publish every committed database write of this process on the bus (of ``app``, or of
    ``broker_url``). Calling it again for the same app and URL is a no-op. Returns the
    callback (for :func:`stop_publishing_database_writes`)."""
    key = (id(app), broker_url)
    existing = _published.get(key)
    if existing is not None:
        return existing
    limit = Settings.from_conf(app.conf if app is not None else None).max_message_bytes

    def publish(writes: CommittedWrites) -> None:
        deps = sorted(writes.dependencies)
        tables = sorted({m.group(1) for d in deps if (m := _TABLE.match(d))})
        data: dict[str, Any] = {"database": writes.database, "tables": tables}
        for part in split_dependencies(deps, max(limit // 2, 1024)):  # well under the limit
            message = build_event(DATABASE_EVENT, data, dependencies=part, max_bytes=limit)
            _publish(message, app, broker_url, DEFAULT_RETRY_POLICY)

    _published[key] = on_committed_writes(publish)
    return publish


def stop_publishing_database_writes(callback: Callable[[CommittedWrites], None]) -> bool:
    """Stop a :func:`publish_database_writes` callback; True when it was registered."""
    for key, registered in list(_published.items()):
        if registered is callback:
            del _published[key]
    return remove_committed_writes_hook(callback)
