"""Several deployments in one process: managers on two standalone Redis servers and a cluster,
invalidated together.

    USERS_REDIS_URL=redis://redis-a:6379/0 PAGES_REDIS_URL=redis://redis-b:6379/0 \\
    FEEDS_REDIS_CLUSTER_URL=redis://cluster-node-1:7000/0 python examples/multi_deployment.py

Three managers (``users``, ``pages`` on the two servers, ``feeds`` on the cluster) cache results
that depend on ``user:1``; one ``depcache.invalidate("user:1")`` reaches all three concurrently.
Key prefixes start with DEP_CACHE_PREFIX (default ``multi``).
"""

from __future__ import annotations

import os
import sys

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps

DEPLOYMENTS = {  # manager name -> (variable holding its URL, is it a cluster)
    "users": ("USERS_REDIS_URL", False),
    "pages": ("PAGES_REDIS_URL", False),
    "feeds": ("FEEDS_REDIS_CLUSTER_URL", True),
}
calls: list[str] = []


def setup() -> dict[str, depcache.CacheManager]:
    """Register one manager per deployment, from the environment; exit naming what is missing."""
    missing = [var for var, _ in DEPLOYMENTS.values() if not os.environ.get(var)]
    if missing:
        sys.exit(f"multi_deployment: set {', '.join(missing)} (Redis URLs)")
    base = os.environ.get("DEP_CACHE_PREFIX") or "multi"
    managers = {}
    for name, (var, cluster) in DEPLOYMENTS.items():
        config = RedisConfig(url=os.environ[var], prefix=f"{base}-{name}", cluster=cluster)
        managers[name] = depcache.get_or_create_cache_manager(name, config=config)
        managers[name].clear()
        kind = "cluster" if cluster else "server"
        print(f"manager {name!r} on the {kind} {config.safe_url}")
    return managers


@cache_with_deps(name="users", ttl=300)
def get_user(user_id: int) -> dict[str, object]:
    calls.append("users")
    add_dependency(f"user:{user_id}")
    return {"id": user_id, "name": "Ada"}


@cache_with_deps(name="pages", ttl=60)
def render_profile(user_id: int) -> str:
    calls.append("pages")
    add_dependency(f"user:{user_id}")
    return f"<h1>user {user_id}</h1>"


@cache_with_deps(name="feeds", ttl=60)
def feed(user_id: int) -> list[str]:
    calls.append("feeds")
    add_dependency(f"user:{user_id}")
    return [f"user {user_id} joined"]


def load_all() -> str:
    calls.clear()
    get_user(1), render_profile(1), feed(1)
    return ", ".join(calls) or "nothing (all hits)"


def main() -> None:
    managers = setup()
    print(f"first load computed: {load_all()}")
    print(f"second load computed: {load_all()}")
    report = depcache.invalidate("user:1")  # every registered manager, concurrently
    print(f"invalidate('user:1') removed: {dict(sorted(report.removed.items()))}")
    print(f"after the invalidation computed: {load_all()}")
    for manager in managers.values():
        manager.clear()


if __name__ == "__main__":
    main()
