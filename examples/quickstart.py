"""The README's quick start as a script: a cached function, a nested one, an invalidation.

With REDIS_URL set it runs on that Redis (keys under DEP_CACHE_PREFIX, default ``quickstart``);
without it, on the in-memory backend.

    python examples/quickstart.py
"""

from __future__ import annotations

import os

from depcache import (
    ConfigBase,
    RedisConfig,
    add_dependency,
    cache_with_deps,
    get_or_create_cache_manager,
)

DATABASE = {"123": {"id": "123", "name": "Ada"}}
computed: list[str] = []


def fetch_user_from_database(user_id: str) -> dict[str, str]:
    """Stands in for a slow query."""
    computed.append(f"fetch_user_from_database({user_id!r})")
    return dict(DATABASE[user_id])


@cache_with_deps(name="quickstart", ttl=300)
def get_user_profile(user_id: str) -> dict[str, str]:
    add_dependency(f"user:{user_id}")  # this result depends on user data
    return fetch_user_from_database(user_id)


@cache_with_deps(name="quickstart", ttl=60)
def get_user_page(user_id: str) -> dict[str, object]:
    """Nested: inherits the inner call's dependencies, also when the inner call is a hit."""
    computed.append(f"get_user_page({user_id!r})")
    return {"profile": get_user_profile(user_id)}


def show(title: str, result: object) -> None:
    print(f"{title}: {result}  computed: {', '.join(computed) or 'nothing (hit)'}")
    computed.clear()


def main() -> None:
    prefix = os.environ.get("DEP_CACHE_PREFIX") or "quickstart"
    url = os.environ.get("REDIS_URL")
    config = (
        RedisConfig(url=url, prefix=prefix) if url else ConfigBase(prefix=prefix, backend="memory")
    )
    cache = get_or_create_cache_manager(name="quickstart", config=config)
    cache.clear()
    where = config.safe_url if isinstance(config, RedisConfig) else "the in-memory backend"
    print(f"manager 'quickstart' on {where}")

    show("first call", get_user_page("123"))  # miss: computes both
    show("second call", get_user_page("123"))  # hit: one Redis round trip
    DATABASE["123"]["name"] = "Ada Lovelace"
    removed = cache.invalidate_dependency("user:123")  # both entries are gone
    print(f"invalidated user:123, entries removed: {removed}")
    show("after the invalidation", get_user_page("123"))
    cache.clear()


if __name__ == "__main__":
    main()
