"""The web app's background job, as a shared task: it joins every Celery app of the process.

So it runs in the app's own worker (``celery -A examples.webapp.worker worker``) and in the
ready-made one (``DEPCACHE_SETUP=examples.webapp.cache,examples.webapp.jobs celery -A
depcache_celery.worker worker``) alike.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

import depcache_celery

from . import store

RENAME_TASK = "webapp.rename_user"


@shared_task(name=RENAME_TASK, bind=True)
def rename_user(self: Task[Any, Any], user_id: int, name: str) -> str | None:
    """Rename the user, then tell every cache about it; returns the event id (None: no user)."""
    if not store.rename_user(user_id, name):
        return None
    # emitted after the commit: a reader re-caching in between would cache the old name
    return depcache_celery.emit("user.updated", {"id": user_id}, app=self.app)
