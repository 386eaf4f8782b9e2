"""The seed README's promises on configuration, over memory and Redis, sync and async."""

from __future__ import annotations

from typing import Any

import pytest

import depcache
from depcache import ConfigBase, add_dependency, cache_with_deps
from tests.conftest import MakeManager
from tests.support.helpers import Calls, cached, call, op


@pytest.mark.parametrize("value", ["false", "0", "no"])
async def test_disabled_cache_calls_through(
    make_manager: MakeManager, mode: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("DEP_CACHE_ENABLED", value)
    manager = make_manager("off")
    assert manager.enabled is False
    calls = Calls()

    @cached(mode, cache_manager=manager, dependencies=["d"])
    def f(x: int) -> int:
        calls(x)
        add_dependency("e")
        return x

    for _ in range(3):
        assert await call(f, 1) == 1
    assert calls.count == 3
    await op(manager, mode, "set", "k", 1)
    assert await op(manager, mode, "get", "k", default="default") == "default"


def test_disabled_by_argument(prefix: str) -> None:
    config = ConfigBase(prefix=prefix, cache_enabled=False)
    manager = depcache.get_or_create_cache_manager(
        name=prefix, config=config, backend=depcache.FakeCacheBackend(config)
    )
    calls = Calls()

    @cache_with_deps(cache_manager=manager)
    def f() -> int:
        calls()
        return 1

    f()
    f()
    assert calls.count == 2


def test_config_reads_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEP_CACHE_PREFIX", "first")
    config = ConfigBase()
    monkeypatch.setenv("DEP_CACHE_PREFIX", "second")
    assert config.prefix == "first"
    assert ConfigBase().prefix == "second"
    assert ConfigBase(prefix="explicit").prefix == "explicit"


@pytest.mark.parametrize("bad_prefix", ["a{b", "a}b", "{x}"])
def test_prefix_with_braces_is_rejected(bad_prefix: str) -> None:
    with pytest.raises(depcache.ConfigError):
        ConfigBase(prefix=bad_prefix)
    with pytest.raises(ValueError, match=r"[{}]|prefix"):
        ConfigBase(prefix=bad_prefix)


@pytest.mark.parametrize(
    ("config_class", "variable", "value"),
    [
        (ConfigBase, "DEP_CACHE_ENABLED", "maybe"),
        (ConfigBase, "DEP_CACHE_GUARD_SECONDS", "soon"),
        (depcache.RedisConfig, "REDIS_PORT", "six"),
        (depcache.RedisConfig, "REDIS_DB", "zero"),
        (depcache.RedisConfig, "REDIS_SSL", "perhaps"),
        (depcache.RedisConfig, "REDIS_SOCKET_TIMEOUT", "slow"),
        (depcache.RedisConfig, "REDIS_MAX_CONNECTIONS", "many"),
    ],
)
def test_bad_environment_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, config_class: type[Any], variable: str, value: str
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv(variable, value)
    with pytest.raises(depcache.ConfigError, match=variable):
        config_class()


def test_error_hierarchy() -> None:
    assert issubclass(depcache.ConfigError, depcache.DepCacheError)
    assert issubclass(depcache.ConfigError, ValueError)
    assert issubclass(depcache.BackendError, depcache.DepCacheError)
    assert issubclass(depcache.SerializationError, depcache.DepCacheError)
    assert issubclass(depcache.SerializationError, TypeError)
    assert issubclass(depcache.InvalidationError, depcache.DepCacheError)
