"""A manager that fails does not hold up the others; its share is retried until it returns, or
dead-lettered once the retry age has passed."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

import depcache
import depcache_celery
from depcache_celery import Router, install
from tests.support.celery_fixtures import (
    Names,
    embedded_worker,
    fill,
    make_app,
    publish_event,
    read_queue,
    wait_for,
)
from tests.support.servers import free_port

pytestmark = pytest.mark.redis


class FlakyBackend(depcache.RedisCacheBackend):
    """A real Redis backend whose invalidations fail while ``down`` is set."""

    down = False

    def invalidate_dependencies(self, dependencies: Iterable[str]) -> int:
        if self.down:
            raise depcache.BackendError("flaky target is down")
        return super().invalidate_dependencies(dependencies)


def _router() -> Router:
    router = Router()
    router.on_event("user.updated", deps=["user:{id}"])
    return router


def _event(user_id: int) -> dict[str, object]:
    return {"event": "user.updated", "data": {"id": user_id}}


def test_failed_share_is_retried_until_the_target_returns(
    broker_url: str, names: Names, redis_url: str, prefix: str
) -> None:
    good = depcache.get_or_create_cache_manager(
        name=f"{prefix}good", config=depcache.RedisConfig(url=redis_url, prefix=f"{prefix}good")
    )
    config = depcache.RedisConfig(url=redis_url, prefix=f"{prefix}flaky")
    flaky_backend = FlakyBackend(config)
    flaky = depcache.get_or_create_cache_manager(
        name=f"{prefix}flaky", config=config, backend=flaky_backend
    )
    for manager in (good, flaky):
        fill(manager, {"u1": {"user:1"}, "u2": {"user:2"}})
    app = make_app(broker_url, names, depcache_retry_backoff_max=0.2)
    install(app, router=_router())
    flaky_backend.down = True
    with embedded_worker(app):
        publish_event(broker_url, names.exchange, "user.updated", _event(1))
        wait_for(lambda: not good.exists("u1"), what="the healthy manager")
        wait_for(
            lambda: depcache_celery.stats.snapshot().get("retries", 0) >= 3,
            what="retries of the failed share",
        )
        assert flaky.exists("u1")
        flaky_backend.down = False
        wait_for(lambda: not flaky.exists("u1"), what="the returning manager")
    assert good.exists("u2")
    assert flaky.exists("u2")
    counts = depcache_celery.stats.snapshot()
    assert counts["target_failures"][f"{prefix}flaky"] >= 3  # type: ignore[index]
    assert f"{prefix}good" not in counts["target_failures"]  # type: ignore[operator]
    assert counts["dead_letters"] == {}


def test_a_target_that_never_returns_is_dead_lettered_after_the_retry_age(
    rabbitmq_broker: str, names: Names, redis_url: str, prefix: str
) -> None:
    good = depcache.get_or_create_cache_manager(
        name=f"{prefix}good", config=depcache.RedisConfig(url=redis_url, prefix=f"{prefix}good")
    )
    gone = f"{prefix}gone"
    depcache.get_or_create_cache_manager(
        name=gone,
        config=depcache.RedisConfig(url=f"redis://127.0.0.1:{free_port()}/0", prefix=gone),
    )
    fill(good, {"u1": {"user:1"}})
    app = make_app(
        rabbitmq_broker, names, depcache_retry_backoff_max=0.1, depcache_retry_max_age=0.5
    )
    install(app, router=_router())
    with embedded_worker(app):
        publish_event(rabbitmq_broker, names.exchange, "user.updated", _event(1))
        wait_for(lambda: not good.exists("u1"), what="the healthy manager")
        [letter] = read_queue(rabbitmq_broker, names.dead, 1)
    body = json.loads(letter.body)
    assert body["kind"] == "expired"
    assert body["managers"] == [gone]
    assert body["dependencies"] == ["user:1"]
    assert body["attempts"] >= 2
    assert gone in body["errors"]
    assert "still failing" in body["reason"]


def test_invalidate_task_with_an_unknown_manager_dead_letters_that_name(
    rabbitmq_broker: str, names: Names, redis_url: str, prefix: str
) -> None:
    good = depcache.get_or_create_cache_manager(
        name=f"{prefix}good", config=depcache.RedisConfig(url=redis_url, prefix=f"{prefix}good")
    )
    fill(good, {"u1": {"user:1"}})
    app = make_app(rabbitmq_broker, names)
    install(app)
    with embedded_worker(app):
        app.send_task("depcache.invalidate", args=[["user:1"], [good.name, "no-such-manager"]])
        wait_for(lambda: not good.exists("u1"), what="the named manager")
        [letter] = read_queue(rabbitmq_broker, names.dead, 1)
    body = json.loads(letter.body)
    assert body["kind"] == "unknown_manager"
    assert body["managers"] == ["no-such-manager"]
