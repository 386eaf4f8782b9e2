"""depcache_celery's pure parts: the event router, the message format, settings, fan-out."""

from __future__ import annotations

import json
import logging

import pytest

import depcache
import depcache_celery
from depcache_celery import BadMessage, EventError, Router, Settings, parse_message
from depcache_celery.worker.fanout import apply, apply_one, in_fanout

# --- router ---------------------------------------------------------------------------------------


def test_decorator_and_declarative_handlers_add_up_without_duplicates() -> None:
    router = Router()

    @router.on_event("user.updated")
    def user_deps(data: dict[str, object]) -> list[str]:
        return [f"user:{data['id']}", "users:list"]

    router.on_event("user.updated", deps=["user:{id}", "posts:user:{id}"])
    deps = router.dependencies_for("user.updated", {"id": 7}, ["users:list", "extra"])
    assert deps == ["user:7", "users:list", "posts:user:7", "extra"]
    assert user_deps({"id": 1}) == ["user:1", "users:list"]  # the decorator returns the function


def test_templates_read_nested_fields() -> None:
    router = Router()
    router.on_event("order.paid", deps=["order:{order[id]}", "shop:{shop}"])
    assert router.dependencies_for("order.paid", {"order": {"id": 3}, "shop": "x"}) == [
        "order:3",
        "shop:x",
    ]


@pytest.mark.parametrize(
    ("data", "field"),
    [({}, "id"), ({"id": None}, "id"), ({"id": 1, "org": {}}, "slug")],
)
def test_missing_template_field_names_event_and_field(data: dict[str, object], field: str) -> None:
    router = Router()
    router.on_event("user.updated", deps=["user:{id}", "org:{org[slug]}"])
    with pytest.raises(EventError, match=rf"'user\.updated'.*'{field}'"):
        router.dependencies_for("user.updated", data)


def test_event_without_handler_or_deps_is_counted_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = Router()
    with caplog.at_level(logging.INFO, logger="depcache_celery.worker.router"):
        assert router.dependencies_for("nobody.cares", {}) == []
        assert router.dependencies_for("nobody.cares", {}) == []
    assert router.unhandled["nobody.cares"] == 2
    assert "nobody.cares" in caplog.text
    assert router.dependencies_for("nobody.cares", {}, ["d"]) == ["d"]
    assert router.unhandled["nobody.cares"] == 2


@pytest.mark.parametrize(
    ("event", "data", "deps", "match"),
    [
        ("", {}, None, "non-empty string"),
        (3, {}, None, "non-empty string"),
        ("e", [], None, "data must be a dict"),
        ("e", {}, "user:1", "list of strings"),
        ("e", {}, ["ok", 1], "non-empty strings"),
        ("e", {}, [""], "non-empty strings"),
    ],
)
def test_routing_validates_its_input(event: object, data: object, deps: object, match: str) -> None:
    with pytest.raises(EventError, match=match):
        Router().dependencies_for(event, data, deps)  # type: ignore[arg-type]


def test_handler_failures_and_bad_outputs_are_event_errors() -> None:
    router = Router()

    @router.on_event("boom")
    def boom(data: dict[str, object]) -> list[str]:
        raise RuntimeError("database down")

    @router.on_event("text")
    def text(data: dict[str, object]) -> str:
        return "user:1"

    @router.on_event("number")
    def number(data: dict[str, object]) -> list[object]:
        return [1]

    with pytest.raises(EventError, match=r"'boom'.*database down") as info:
        router.dependencies_for("boom", {})
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(EventError, match="returned a string"):
        router.dependencies_for("text", {})
    with pytest.raises(EventError, match="returned 1"):
        router.dependencies_for("number", {})


def test_registration_is_validated() -> None:
    router = Router()
    with pytest.raises(ValueError, match="empty"):
        router.on_event("")
    with pytest.raises(TypeError, match="not one string"):
        router.on_event("e", deps="user:{id}")
    with pytest.raises(ValueError, match="positional"):
        router.on_event("e", deps=["user:{}"])
    with pytest.raises(ValueError, match="invalid dependency template"):
        router.on_event("e", deps=["user:{id"])
    with pytest.raises(TypeError, match="callable"):
        router.add_handler("e", "not a function")  # type: ignore[arg-type]


def test_module_level_on_event_uses_the_default_router() -> None:
    handler = depcache_celery.on_event("test.default.router", deps=["thing:{id}"])
    try:
        assert depcache_celery.default_router.handlers("test.default.router") == (handler,)
        assert depcache_celery.default_router.dependencies_for(
            "test.default.router", {"id": 5}
        ) == ["thing:5"]
    finally:
        depcache_celery.default_router.remove("test.default.router")


# --- messages -------------------------------------------------------------------------------------


def test_valid_message_parses_from_bytes_and_text() -> None:
    raw = {"event": "user.updated", "data": {"id": 1}, "id": "abc", "dependencies": ["x"]}
    text = json.dumps(raw)
    for body in (text, text.encode(), b"\xef\xbb\xbf" + text.encode()):
        message = parse_message(body)
        assert (message.event, message.data, message.id, message.dependencies) == (
            "user.updated",
            {"id": 1},
            "abc",
            ["x"],
        )
    minimal = parse_message('{"event": "e", "data": {}, "future_field": [1]}')
    assert (minimal.id, minimal.dependencies) == (None, None)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("[1, 2]", "not a JSON object but an array"),
        ('{"data": {}}', "missing field 'event'"),
        ('{"event": 1, "data": {}}', "'event' must be a string, got a number"),
        ('{"event": "", "data": {}}', "'event' must not be empty"),
        ('{"event": "e"}', "missing field 'data'"),
        ('{"event": "e", "data": [1]}', "'data' must be an object, got an array"),
        ('{"event": "e", "data": null}', "'data' must be an object, got null"),
        ('{"event": "e", "data": {}, "id": 5}', "'id' must be a string"),
        ('{"event": "e", "data": {}, "dependencies": "x"}', "array of strings, got a string"),
        ('{"event": "e", "data": {}, "dependencies": ["a", 2]}', "got a number at index 1"),
        ('{"event": "e", "data": {}, "dependencies": [""]}', "empty string at index 0"),
        ("[" * 100_000 + "]" * 100_000, "too big"),
        ("[" * 30_000 + "]" * 30_000, "nested too deeply"),
    ],
)
def test_bad_messages_say_why(body: bytes | str, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason) as info:
        parse_message(body)
    assert reason in info.value.reason


def test_size_limit_is_configurable_and_counts_utf8_bytes() -> None:
    body = json.dumps({"event": "e", "data": {"s": "é" * 40}}, ensure_ascii=False)
    assert len(body) < 100 < len(body.encode())
    with pytest.raises(BadMessage, match="too big"):
        parse_message(body, max_bytes=100)
    assert parse_message(body, max_bytes=200).data == {"s": "é" * 40}


# --- settings -------------------------------------------------------------------------------------


def test_settings_come_from_conf_then_environment_then_defaults() -> None:
    assert Settings.from_conf({}, {}) == Settings()
    env = {"DEPCACHE_QUEUE": "q-env", "DEPCACHE_BINDING_KEYS": "user.*, order.#"}
    settings = Settings.from_conf({"depcache_queue": "q-conf", "depcache_prefetch_count": 5}, env)
    assert settings.queue == "q-conf"
    assert settings.binding_keys == ("user.*", "order.#")
    assert settings.prefetch_count == 5
    assert Settings.from_conf({}, {"DEPCACHE_MAX_MESSAGE_BYTES": "1024"}).max_message_bytes == 1024


@pytest.mark.parametrize(
    ("conf", "env", "name"),
    [
        ({"depcache_max_message_bytes": 0}, {}, "depcache_max_message_bytes"),
        ({}, {"DEPCACHE_MAX_MESSAGE_BYTES": "lots"}, "DEPCACHE_MAX_MESSAGE_BYTES"),
        ({"depcache_binding_keys": [""]}, {}, "depcache_binding_keys"),
        ({"depcache_queue": 3}, {}, "depcache_queue"),
    ],
)
def test_bad_settings_name_the_key(conf: dict[str, object], env: dict[str, str], name: str) -> None:
    with pytest.raises(depcache.ConfigError, match=name):
        Settings.from_conf(conf, env)


# --- fan-out --------------------------------------------------------------------------------------


def _memory_manager(name: str) -> depcache.CacheManager:
    config = depcache.ConfigBase(prefix=name)
    return depcache.get_or_create_cache_manager(
        name=name,
        config=config,
        backend=depcache.FakeCacheBackend(config),
        async_backend=depcache.FakeAsyncCacheBackend(config),
    )


class _Broken(depcache.FakeCacheBackend):
    def invalidate_dependencies(self, dependencies: object) -> int:
        raise depcache.BackendError("target down")


def test_fanout_reports_per_manager_and_never_raises(prefix: str) -> None:
    good = _memory_manager(f"{prefix}good")
    config = depcache.ConfigBase(prefix=f"{prefix}bad")
    depcache.get_or_create_cache_manager(
        name=f"{prefix}bad", config=config, backend=_Broken(config)
    )
    good.set("k", 1, dependencies={"user:1"})
    report = apply(["user:1", "user:1", "user:2"])
    assert report.dependencies == ["user:1", "user:2"]
    assert report.removed == {f"{prefix}good": 1}
    assert report.failed == [f"{prefix}bad"]
    assert "target down" in report.summary()["errors"][f"{prefix}bad"]  # type: ignore[index]
    assert not report.ok

    named = apply(["user:1"], managers=[f"{prefix}good", "nope"])
    assert named.removed == {f"{prefix}good": 0}
    assert named.unknown == ["nope"]
    assert apply([]).ok
    with pytest.raises(TypeError):
        apply([""])


def test_one_managers_share_reports_as_the_fanout_does(prefix: str) -> None:
    """apply_one (the worker's lanes: one call per manager) against apply(deps, [manager])."""
    good = _memory_manager(f"{prefix}good")
    config = depcache.ConfigBase(prefix=f"{prefix}bad")
    depcache.get_or_create_cache_manager(
        name=f"{prefix}bad", config=config, backend=_Broken(config)
    )
    seen: list[bool] = []
    good.events.on(depcache.CacheEventType.INVALIDATE, lambda event: seen.append(in_fanout()))
    for name in (f"{prefix}good", f"{prefix}bad", "nope"):
        good.set("k", 1, dependencies={"user:1"})
        one = apply_one(["user:1", "user:1"], name)
        good.set("k", 1, dependencies={"user:1"})
        both = apply(["user:1", "user:1"], managers=[name])
        assert one.dependencies == both.dependencies == ["user:1"]
        assert one.removed == both.removed
        assert one.unknown == both.unknown
        assert one.failed == both.failed
        assert {n: str(e) for n, e in one.errors.items()} == {
            n: str(e) for n, e in both.errors.items()
        }
    assert seen == [True, True]  # the manager invalidated inside the fan-out, both ways
    assert not in_fanout()
    assert apply_one([], "nope").ok
    with pytest.raises(TypeError):
        apply_one([""], f"{prefix}good")
