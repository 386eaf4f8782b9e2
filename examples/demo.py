"""The whole flow in one script: cached functions, a nested call, a background job emitting
"user.updated", the depcache_celery worker fanning it out, and the next call recomputing.

With nothing configured it runs on the in-memory backend, kombu's in-memory broker and a worker
in a thread of this process; set REDIS_URL (and CELERY_BROKER_URL) to run it on real servers
(DEPCACHE_* variables and CELERY_CONFIG_MODULE configure the bus as for any worker).

    python examples/demo.py
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from celery import Celery
from celery.contrib.testing.worker import start_worker
from kombu import Connection, Exchange, Producer

import depcache
import depcache_celery
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
    print(f"cache: manager 'demo' on {where}")
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


# what the worker invalidates for each domain event
depcache_celery.on_event("user.updated", deps=["user:{id}"])
depcache_celery.on_event("posts.updated", deps=["posts:user:{user_id}"])


def step(title: str, result: object) -> None:
    computed = ", ".join(calls) or "nothing (all hits)"
    print(f"- {title}: {result}\n    computed: {computed}")
    calls.clear()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.01)


def make_app() -> Celery:
    broker = os.environ.get("CELERY_BROKER_URL", "memory://localhost/")
    app = Celery("demo", broker=broker, set_as_current=False)
    app.conf.update(broker_heartbeat=0, worker_hijack_root_logger=False)
    app.config_from_envvar("CELERY_CONFIG_MODULE", silent=True)  # further settings, optional
    depcache_celery.install(app)
    print(f"bus: Celery broker {broker}, depcache_celery installed")
    return app


def main() -> None:
    setup()
    app = make_app()
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        print("worker: running in a thread of this process")
        step("first page view", get_page(123))
        step("second page view", get_page(123))

        # a background job changes the user, then emits the domain event as a Celery task
        USERS[123]["name"] = "Ada Lovelace"
        app.send_task("depcache.event", args=["user.updated", {"id": 123}])
        print("- background job: user 123 renamed, emitted 'user.updated' {'id': 123}")
        wait_until(lambda: processed() >= 1, "the worker's invalidation")
        step("page view after the worker invalidated user:123", get_page(123))

        # another service, without Celery, publishes raw JSON on the event exchange
        POSTS[123].append("Sketch of the Analytical Engine")
        publish_raw(app, "posts.updated", {"user_id": 123})
        print("- another service: published raw JSON 'posts.updated' {'user_id': 123}")
        wait_until(lambda: processed() >= 2, "the bus consumer's invalidation")
        step("page view after the posts changed", get_page(123))
    print(f"worker counters: {depcache_celery.stats.snapshot()}")


def processed() -> int:
    """Dependencies the worker has invalidated so far (counted once they are applied)."""
    count = depcache_celery.stats.snapshot().get("dependencies", 0)
    return count if isinstance(count, int) else 0


def publish_raw(app: Celery, event: str, data: dict[str, object]) -> None:
    name = depcache_celery.Settings.from_conf(app.conf).exchange  # DEPCACHE_EXCHANGE, ...
    exchange = Exchange(name, type="topic", durable=True, auto_delete=False)
    body = json.dumps({"event": event, "data": data}).encode()
    with Connection(app.conf.broker_url) as conn:
        Producer(conn.default_channel).publish(
            body,
            exchange=exchange,
            routing_key=event,
            content_type="application/json",
            content_encoding="utf-8",
            declare=[exchange],
        )


if __name__ == "__main__":
    main()
