"""Nothing read from Redis can hurt: garbage is a miss, crafted data imports and calls nothing."""

from __future__ import annotations

import importlib.abc
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import depcache
from depcache import add_dependency, cache_with_deps, current_cache_key
from tests.support.helpers import Calls, cached, call, entry_key, op

pytestmark = pytest.mark.redis

PROBE_MODULE = "depcache_evil_probe"


class _ImportRecorder(importlib.abc.MetaPathFinder):
    """A meta path finder that records every module name anyone tries to import."""

    def __init__(self) -> None:
        self.requested: list[str] = []

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        self.requested.append(fullname)


@pytest.fixture
def import_recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[_ImportRecorder]:
    recorder = _ImportRecorder()
    monkeypatch.setattr(sys, "meta_path", [recorder, *sys.meta_path])
    yield recorder
    assert PROBE_MODULE not in sys.modules


@pytest.fixture
def process_spies(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Replace os.system and subprocess.Popen with recorders."""
    spy = Calls()

    def fake_system(*args: Any, **kwargs: Any) -> int:
        spy("os.system", args)
        return 0

    class FakePopen:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            spy("subprocess.Popen", args)

    monkeypatch.setattr(os, "system", fake_system)
    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    return spy


# --- garbage in an entry --------------------------------------------------------------------------


def _truncate(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def _flip(raw: bytes) -> bytes:
    return bytes(b ^ 0x5A for b in raw)


GARBAGE = {
    "empty": lambda raw: b"",
    "binary": lambda raw: b"\x00\x01\x02\xff\xfe",
    "text": lambda raw: b"not an entry at all",
    "json": lambda raw: b'{"__dc": "exc"}',
    "json list": lambda raw: b"[1, 2, 3]",
    "truncated": _truncate,
    "flipped": _flip,
    "doubled": lambda raw: raw + raw,
    "trailing junk": lambda raw: raw + b"\x00junk",
}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("corrupt", list(GARBAGE.values()), ids=list(GARBAGE))
async def test_garbage_entry_is_a_miss_and_is_overwritten(
    redis_manager: depcache.CacheManager,
    redis_client: redis.Redis,
    prefix: str,
    mode: str,
    corrupt: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = Calls()
    keys: list[str | None] = []

    @cached(mode, cache_manager=redis_manager, dependencies=["g"])
    def f(x: int) -> dict[str, Any]:
        calls(x)
        keys.append(current_cache_key())
        return {"x": x, "t": (1, 2)}

    assert await call(f, 1) == {"x": 1, "t": (1, 2)}
    assert keys[0] is not None
    redis_key = entry_key(prefix, keys[0])
    raw = redis_client.get(redis_key)
    assert raw is not None, f"no entry at {redis_key}"

    garbage = corrupt(raw)
    assert garbage != raw
    redis_client.set(redis_key, garbage)
    caplog.set_level(logging.DEBUG)

    assert await call(f, 1) == {"x": 1, "t": (1, 2)}
    assert calls.count == 2
    assert redis_client.get(redis_key) not in (None, garbage)  # overwritten by the new result
    assert any(r.name.startswith("depcache") for r in caplog.records), "garbage was not logged"

    assert await call(f, 1) == {"x": 1, "t": (1, 2)}
    assert calls.count == 2
    assert redis_manager.invalidate_dependency("g") == 1


# --- crafted exception entries --------------------------------------------------------------------

CRAFTED_TYPES = [
    "os.system",
    "subprocess.Popen",
    f"{PROBE_MODULE}.Evil",
    f"{PROBE_MODULE}.ValueError",
    "builtins.Exception",
    "builtins.KeyError",
    "builtins.eval",
]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("crafted_type", CRAFTED_TYPES)
async def test_crafted_exception_type_imports_and_calls_nothing(
    redis_manager: depcache.CacheManager,
    redis_client: redis.Redis,
    prefix: str,
    mode: str,
    crafted_type: str,
    import_recorder: _ImportRecorder,
    process_spies: Calls,
) -> None:
    calls = Calls()
    keys: list[str | None] = []

    @cached(mode, cache_manager=redis_manager, cache_exception_types=[ValueError])
    def f() -> int:
        calls()
        keys.append(current_cache_key())
        raise ValueError("echo hi")

    with pytest.raises(ValueError, match="echo hi"):
        await call(f)
    assert keys[0] is not None
    redis_key = entry_key(prefix, keys[0])
    raw = redis_client.get(redis_key)
    assert raw is not None, "the ValueError was not cached"

    qualified = b"builtins.ValueError"
    old = qualified if qualified in raw else b"ValueError"
    if old not in raw:
        pytest.skip("entries do not name exception types as text; nothing to tamper with")
    crafted = raw.replace(old, crafted_type.encode())
    redis_client.set(redis_key, crafted)
    import_recorder.requested.clear()

    # The crafted entry is not rebuilt: the call recomputes (and raises its own ValueError).
    with pytest.raises(ValueError, match="echo hi") as excinfo:
        await call(f)
    assert type(excinfo.value) is ValueError
    assert calls.count == 2
    assert process_spies.args == []
    assert PROBE_MODULE not in import_recorder.requested
    assert PROBE_MODULE not in sys.modules


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_marker_shaped_result_is_plain_data(
    redis_manager: depcache.CacheManager,
    mode: str,
    import_recorder: _ImportRecorder,
    process_spies: Calls,
) -> None:
    value = {"__dc": "exc", "type": "os.system", "args": ["echo hi"]}
    probe = {"__dc": "exc", "type": f"{PROBE_MODULE}.Evil", "args": []}
    calls = Calls()

    @cached(mode, cache_manager=redis_manager, cache_exception_types=[Exception])
    def f(which: str) -> dict[str, Any]:
        calls(which)
        return value if which == "system" else probe

    for _ in range(2):
        assert await call(f, "system") == value
        assert await call(f, "probe") == probe
    assert calls.count == 2
    assert process_spies.args == []
    assert PROBE_MODULE not in import_recorder.requested


def test_exception_subclass_outside_listed_types_is_not_rebuilt(
    redis_manager: depcache.CacheManager, redis_client: redis.Redis, prefix: str
) -> None:
    """An entry whose exception type is a listed type's *base* is refused (recomputed)."""
    calls = Calls()
    keys: list[str | None] = []

    class NarrowError(LookupError):
        pass

    @cache_with_deps(cache_manager=redis_manager, cache_exception_types=[NarrowError])
    def f() -> int:
        calls()
        keys.append(current_cache_key())
        add_dependency("narrow")
        raise NarrowError("narrow")

    with pytest.raises(NarrowError):
        f()
    with pytest.raises(NarrowError):
        f()
    assert calls.count == 1
    assert keys[0] is not None
    raw = redis_client.get(entry_key(prefix, keys[0]))
    assert raw is not None
    if b"NarrowError" not in raw:
        pytest.skip("entries do not name exception types as text")
    redis_client.set(entry_key(prefix, keys[0]), raw.replace(b"NarrowError", b"LookupError"))
    with pytest.raises(NarrowError):
        f()
    assert calls.count == 2


# --- unreachable Redis ----------------------------------------------------------------------------

PASSWORD = "s3" + "cret"
UNREACHABLE = [
    pytest.param({"url": f"redis://user:{PASSWORD}@127.0.0.1:1/0"}, id="url"),
    pytest.param({"host": "127.0.0.1", "port": 1, "password": PASSWORD}, id="host-port"),
    # Any leaked form of this one (raw or URL-quoted) still contains PASSWORD.
    pytest.param(
        {"host": "127.0.0.1", "port": 1, "password": f"p@ss/w:rd#{PASSWORD}"}, id="special-chars"
    ),
]


def _unreachable_manager(prefix: str, settings: dict[str, Any]) -> depcache.CacheManager:
    config = depcache.RedisConfig(prefix=prefix, socket_timeout=2, **settings)
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config)
    return depcache.get_or_create_cache_manager(name=prefix, config=config)


def _assert_names_url_not_password(exc: BaseException) -> None:
    message = str(exc)
    assert "127.0.0.1:1" in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(exc)
    cause: BaseException | None = exc
    while cause is not None:
        assert PASSWORD not in str(cause)
        cause = cause.__cause__ or cause.__context__


@pytest.mark.parametrize("settings", UNREACHABLE)
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_unreachable_redis_raises_backend_error(
    prefix: str, mode: str, settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    manager = _unreachable_manager(prefix, settings)
    calls = Calls()

    @cached(mode, cache_manager=manager)
    def f() -> int:
        calls()
        return 1

    with pytest.raises(depcache.BackendError) as excinfo:
        await call(f)
    _assert_names_url_not_password(excinfo.value)

    with pytest.raises(depcache.BackendError) as excinfo:
        await op(manager, mode, "get", "k")
    _assert_names_url_not_password(excinfo.value)

    with pytest.raises(depcache.BackendError) as excinfo:
        await op(manager, mode, "invalidate_dependency", "d")
    _assert_names_url_not_password(excinfo.value)


@pytest.mark.parametrize("settings", UNREACHABLE)
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_unreachable_redis_with_silent_errors_returns_result(
    prefix: str,
    mode: str,
    settings: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    caplog.set_level(logging.WARNING)
    manager = _unreachable_manager(prefix, settings)
    calls = Calls()

    @cached(mode, cache_manager=manager, silent_backend_errors=True)
    def f(x: int) -> tuple[int, int]:
        calls(x)
        return (x, calls.count)

    assert await call(f, 5) == (5, 1)
    assert await call(f, 5) == (5, 2)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "backend errors were not logged as warnings"
    assert "127.0.0.1:1" in caplog.text
    assert PASSWORD not in caplog.text
