"""The whole flow in one script: cached functions, a nested call, an invalidation, a recompute.

With nothing configured it runs on the in-memory backend; with REDIS_URL set it runs on Redis.

    python examples/demo.py
"""

from __future__ import annotations

import os

import depcache
from depcache import ConfigBase, RedisConfig, add_dependency, cache_with_deps

USERS = {123: {"name": "Ada"}}
POSTS = {123: ["Notes on the Analytical Engine"]}
calls: list[str] = []


def setup() -> depcache.CacheManager:
    """Register the demo's manager: Redis when REDIS_URL is set, else in memory."""
    url = os.environ.get("REDIS_URL")
    config = (
        RedisConfig(url=url, prefix="demo") if url else ConfigBase(prefix="demo", backend="memory")
    )
    manager = depcache.get_or_create_cache_manager("demo", config=config)
    manager.clear()
    where = config.safe_url if isinstance(config, RedisConfig) else "the in-memory backend"
    print(f"manager 'demo' on {where}")
    return manager


@cache_with_deps(name="demo", ttl=300)
def get_user(user_id: int) -> dict[str, str]:
    calls.append(f"get_user({user_id})")
    add_dependency(f"user:{user_id}")
    return dict(USERS[user_id])


@cache_with_deps(name="demo", ttl=300)
def get_posts(user_id: int) -> list[str]:
    calls.append(f"get_posts({user_id})")
    add_dependency(f"posts:user:{user_id}")
    return list(POSTS[user_id])


@cache_with_deps(name="demo", ttl=60)
def get_page(user_id: int) -> dict[str, object]:
    """Nested: depends on whatever get_user and get_posts depend on, hit or miss."""
    calls.append(f"get_page({user_id})")
    return {"user": get_user(user_id), "posts": get_posts(user_id)}


def step(title: str, result: object) -> None:
    computed = ", ".join(calls) or "nothing (all hits)"
    print(f"- {title}: {result}\n    computed: {computed}")
    calls.clear()


def main() -> None:
    manager = setup()
    step("first page view", get_page(123))
    step("second page view", get_page(123))
    USERS[123]["name"] = "Ada Lovelace"
    removed = manager.invalidate_dependency("user:123")
    print(f"- user 123 updated; invalidated 'user:123' ({removed} entries removed)")
    step("page view after the update", get_page(123))
    report = depcache.invalidate("posts:user:123")
    print(f"- depcache.invalidate('posts:user:123') on every manager: {report.removed}")
    step("page view after the posts changed", get_page(123))


if __name__ == "__main__":
    main()
