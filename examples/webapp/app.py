"""The web app: endpoints cached with depcache, writes handed to a background job.

    flask --app examples.webapp.app run

- ``GET /users/<id>``: the user, cached in ``users`` (depends on ``user:<id>``);
- ``GET /users/<id>/page``: a page built from it, cached in ``pages`` (also depends on
  ``user:<id>``);
- ``POST /users/<id>/name`` with ``{"name": ...}``: queues the job ``webapp.rename_user``
  (``jobs.py``), which renames the user and emits ``user.updated``; the depcache worker then
  invalidates ``user:<id>`` in both caches, and the next GET shows the new name.

Each cached response carries ``computed_at``, the time it was computed: equal on a hit.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from flask import Flask, abort, request

from depcache import add_dependency, cache_with_deps

from . import cache, store, worker


@cache_with_deps(name="users", ttl=300)
def load_user(user_id: int) -> dict[str, object] | None:
    add_dependency(f"user:{user_id}")
    user = store.get_user(user_id)
    return None if user is None else {**user, "computed_at": time.time()}


@cache_with_deps(name="pages", ttl=60)
def load_page(user_id: int) -> dict[str, object] | None:
    # dependencies are tracked per manager: an inner call cached in another manager ("users")
    # does not pass its dependencies to this one, so declare them here too
    add_dependency(f"user:{user_id}")
    user = load_user(user_id)
    if user is None:
        return None
    return {"title": f"{user['name']}'s page", "user": user, "computed_at": time.time()}


def create_app(celery_app: Celery | None = None) -> Flask:
    """The Flask app; jobs go to ``celery_app`` (default: ``worker.app``)."""
    cache.setup()
    jobs = celery_app if celery_app is not None else worker.app
    flask_app = Flask(__name__)

    @flask_app.get("/users/<int:user_id>")
    def user(user_id: int) -> dict[str, Any]:
        found = load_user(user_id)
        if found is None:
            abort(404)
        return found

    @flask_app.get("/users/<int:user_id>/page")
    def page(user_id: int) -> dict[str, Any]:
        found = load_page(user_id)
        if found is None:
            abort(404)
        return found

    @flask_app.post("/users/<int:user_id>/name")
    def rename(user_id: int) -> tuple[dict[str, Any], int]:
        body = request.get_json(silent=True)
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            abort(400, 'send {"name": "..."}')
        job = jobs.send_task(worker.RENAME_TASK, args=[user_id, name])
        return {"job": job.id, "status": "queued"}, 202

    return flask_app
