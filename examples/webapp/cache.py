"""The web app's caches and the events that invalidate them; imported by the app and the worker.

- ``users`` on REDIS_URL (standalone, or a cluster with REDIS_CLUSTER=true);
- ``pages`` on PAGES_REDIS_URL (default: REDIS_URL), a cluster when PAGES_REDIS_CLUSTER=true;
- key prefixes ``<DEP_CACHE_PREFIX>-users`` and ``<DEP_CACHE_PREFIX>-pages`` (default
  ``webapp``).

``user.updated {"id": N}`` invalidates ``user:N`` on both (see ``worker.py``).
"""

from __future__ import annotations

import os

import depcache
import depcache_celery

_TRUE = {"1", "true", "yes", "on"}

# what the worker invalidates for each domain event
depcache_celery.on_event("user.updated", deps=["user:{id}"])


def setup() -> tuple[depcache.CacheManager, depcache.CacheManager]:
    """Register the two managers (idempotent: registering again returns the same ones)."""
    base = os.environ.get("DEP_CACHE_PREFIX") or "webapp"
    users = depcache.get_or_create_cache_manager(
        "users", config=depcache.RedisConfig(prefix=f"{base}-users")
    )
    pages_cluster = (os.environ.get("PAGES_REDIS_CLUSTER") or "").lower() in _TRUE
    pages = depcache.get_or_create_cache_manager(
        "pages",
        config=depcache.RedisConfig(
            url=os.environ.get("PAGES_REDIS_URL") or None,
            prefix=f"{base}-pages",
            cluster=pages_cluster or None,
        ),
    )
    return users, pages


setup()
