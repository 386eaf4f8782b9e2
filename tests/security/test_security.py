"""Security: nothing read from Redis or the bus imports a module or calls a function; pickle is
opt-in and signed; credentials never show in logs, reprs, errors, CLI output or dead letters.

Complements test_safety.py (garbage entries, crafted exception types), test_pickle_serializer.py
(the signed round trip) and test_tls_acl.py (TLS and ACL users).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.abc
import json
import logging
import os
import pickle
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from kombu import Connection, Producer

import depcache
import depcache_celery
from depcache import RedisConfig, SignedPickleSerializer, cache_with_deps, current_cache_key
from depcache_celery import BatchProcessor, Router, install
from tests.support.celery_fixtures import (
    Names,
    embedded_worker,
    fill,
    make_app,
    publish_event,
    read_queue,
    wait_for,
)
from tests.support.helpers import Calls, entry_key
from tests.support.servers import RedisServer, redis_server
from tests.support.strategies import RecordingChannel, examples, kombu_messages, lenient_decode

pytestmark = pytest.mark.redis

PROBE = "depcache_security_probe"
PICKLE_KEY = "k" * 40
_SYSTEM = os.system  # the real one (posix.system), for payloads pickled while it is spied on


# --- detecting code execution ---------------------------------------------------------------------


class _ImportRecorder(importlib.abc.MetaPathFinder):
    """Records every module name anyone tries to import (and finds none of them itself)."""

    def __init__(self) -> None:
        self.requested: list[str] = []

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        self.requested.append(fullname)


class Tripwire:
    """Everything crafted data could make a process do, recorded."""

    def __init__(self, marker: Path, recorder: _ImportRecorder, calls: Calls) -> None:
        self.marker = marker
        self.recorder = recorder
        self.calls = calls
        self.modules = set(sys.modules)
        #: a Celery worker imports modules of its own as it starts; its tests only look for PROBE
        self.any_new_module = False

    def set_up(self) -> None:
        """What was imported so far was the test's setup (e.g. a processor importing
        prometheus-client when it is made), not the crafted data's doing."""
        self.recorder.requested.clear()
        self.modules = set(sys.modules)

    def assert_untouched(self) -> None:
        assert not self.marker.exists(), "crafted data ran code (the marker file was written)"
        assert self.calls.args == [], f"crafted data called {self.calls.args}"
        assert PROBE not in sys.modules
        assert PROBE not in self.recorder.requested
        if self.any_new_module:
            return
        # a crafted time zone name may make zoneinfo look inside the tzdata package, and no further
        requested = self.recorder.requested
        assert all(m.split(".")[0] == "tzdata" for m in requested), requested
        imported = {m for m in set(sys.modules) - self.modules if m.split(".")[0] != "tzdata"}
        assert not imported, f"crafted data imported {sorted(imported)}"


def _touch_marker(marker: str) -> None:
    Path(marker).touch()


@pytest.fixture
def tripwire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tripwire]:
    """Spies on os.system, os.popen, subprocess.Popen and imports; a marker file that any
    unpickled payload below writes."""
    calls = Calls()
    recorder = _ImportRecorder()

    def spy(name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            calls(name, args)

        return record

    monkeypatch.setattr(os, "system", spy("os.system"))
    monkeypatch.setattr(os, "popen", spy("os.popen"))
    monkeypatch.setattr(subprocess, "Popen", spy("subprocess.Popen"))
    monkeypatch.setattr(sys, "meta_path", [recorder, *sys.meta_path])
    wire = Tripwire(tmp_path / "pwned", recorder, calls)
    yield wire
    wire.assert_untouched()


class _WritesMarker:
    """Unpickling this writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_touch_marker, (self.marker,))


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.command = f"touch {marker}"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_SYSTEM, (self.command,))


class _Imports:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (importlib.import_module, (PROBE,))


def _pickles(marker: Path) -> list[bytes]:
    return [
        pickle.dumps(payload, protocol=proto)
        for payload in (_WritesMarker(marker), _RunsShell(marker), _Imports())
        for proto in (0, 5)
    ]


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _crafted_payloads(marker: Path) -> dict[str, bytes]:
    """Entry payloads (after the header line) that try to name code."""
    tagged = [
        {"__dc": "os.system", "v": f"touch {marker}"},
        {"__dc": "__import__", "v": PROBE},
        {"__dc": f"{PROBE}.Evil", "v": []},
        {"__dc": "dtz", "v": ["2020-01-01T00:00:00", PROBE, 0]},
        {"__dc": "dtz", "v": ["2020-01-01T00:00:00", f"{marker}", 0]},
        {"__dc": "dtz", "v": ["2020-01-01T00:00:00", "../../../../etc/passwd", 0]},
        {"__dc": "t", "v": [{"__dc": "exc", "type": "os.system", "args": ["x"]}]},
        {"py/object": "os.system", "py/reduce": [{"py/function": "os.system"}]},
        {"__class__": "subprocess.Popen", "__reduce__": ["touch", str(marker)]},
    ]
    out: dict[str, bytes] = {}
    for i, data in enumerate(_pickles(marker)):
        out[f"pickle {i}"] = data
        out[f"signed-looking pickle {i}"] = b"SP1" + b"\0" * 32 + data
    for i, obj in enumerate(tagged):
        out[f"tagged {i}"] = b"T" + json.dumps(obj).encode()
        out[f"plain {i}"] = b"P" + json.dumps(obj).encode()
    out["deep plain"] = b"P" + _deep(100_000)
    out["deep tagged"] = b'T{"__dc":"t","v":' * 3000 + b"[]" + b"}" * 3000
    out["deep tagged list"] = b"T" + _deep(100_000)
    out["huge int"] = b'T{"__dc":"i","v":"' + b"9" * 100_000 + b'"}'
    out["huge decimal exponent"] = b'T{"__dc":"dec","v":"1e999999999999"}'
    return out


_EXCEPTION_TYPES = [
    "os.system",
    "subprocess.Popen",
    "importlib.import_module",
    "builtins.eval",
    "builtins.SystemExit",  # a BaseException outside the allowed Exception: must not be raised
    "builtins.KeyboardInterrupt",
    "builtins.BaseException",
    f"{PROBE}.Evil",
    "pathlib.Path",
]


def _crafted_exceptions(marker: Path) -> dict[str, bytes]:
    """Exception payloads naming arbitrary callables, or with attributes aimed at dunders."""
    out = {}
    for name in _EXCEPTION_TYPES:
        body = {"type": name, "args": [f"touch {marker}"], "attrs": {}}
        out[name] = b"P" + json.dumps(body).encode()
    dunders = {
        "type": "builtins.ValueError",
        "args": ["crafted"],
        "attrs": {"__class__": "os.system", "__reduce__": "x", "__init__": 1, "args": 5},
    }
    out["dunder attrs"] = b"P" + json.dumps(dunders).encode()
    for i, data in enumerate(_pickles(marker)):
        out[f"pickle {i}"] = data
    return out


# --- crafted cache entries ------------------------------------------------------------------------


def _cached_entry(
    manager: depcache.CacheManager, client: redis.Redis, prefix: str, **decorator: Any
) -> tuple[Any, Calls, str, bytes]:
    """A cached function whose entry is stored; returns it, its calls, the entry key and bytes."""
    calls = Calls()
    keys: list[str] = []

    @cache_with_deps(cache_manager=manager, **decorator)
    def f() -> dict[str, int]:
        calls()
        keys.append(current_cache_key() or "")
        depcache.add_dependency("crafted")
        return {"computed": len(keys)}

    assert f() == {"computed": 1}
    redis_key = entry_key(prefix, keys[0])
    raw = client.get(redis_key)
    assert isinstance(raw, bytes)
    return f, calls, redis_key, raw


def test_crafted_entries_import_and_call_nothing(
    redis_manager: depcache.CacheManager,
    redis_client: redis.Redis,
    prefix: str,
    tripwire: Tripwire,
) -> None:
    f, calls, redis_key, raw = _cached_entry(
        redis_manager, redis_client, prefix, cache_exception_types=[Exception]
    )
    header = raw.split(b"\n", 1)[0][1:]
    crafted = {
        f"{kind.decode()} {name}": kind + header + b"\n" + payload
        for name, payload in _crafted_payloads(tripwire.marker).items()
        for kind in (b"v", b"V")
    }
    crafted.update(
        {
            f"exception {name}": kind + header + b"\n" + payload
            for name, payload in _crafted_exceptions(tripwire.marker).items()
            for kind in (b"e", b"E")
        }
    )
    crafted["deep header"] = b"v" + _deep(100_000) + b"\nP1"
    crafted["header naming a class"] = b'v{"__dc":"os.system","v":"x"}\nP1'
    for name, blob in crafted.items():
        redis_client.set(redis_key, blob)
        before = calls.count
        outcome = _outcome(f)
        tripwire.assert_untouched()
        if isinstance(outcome, BaseException):
            # only "dunder attrs" names an allowed type: rebuilt as that type, with data attributes
            assert name.endswith("exception dunder attrs"), (name, outcome)
            assert (type(outcome), outcome.args) == (ValueError, ("crafted",))
        elif calls.count == before:
            # decoded anyway: a JSON lookalike read back as the plain data it is
            assert outcome == lenient_decode(redis_manager.serializer, blob), name
        else:  # a miss: recomputed
            assert outcome == {"computed": before + 1}, name


def _outcome(f: Any) -> Any:
    try:
        return f()
    except Exception as exc:
        return exc


async def test_crafted_entries_read_by_async_calls_import_and_call_nothing(
    redis_manager: depcache.CacheManager,
    redis_client: redis.Redis,
    prefix: str,
    tripwire: Tripwire,
) -> None:
    calls = Calls()
    keys: list[str] = []

    @cache_with_deps(cache_manager=redis_manager, cache_exception_types=[Exception])
    async def f() -> int:
        calls()
        keys.append(current_cache_key() or "")
        return 1

    assert await f() == 1
    redis_key = entry_key(prefix, keys[0])
    for payload in _pickles(tripwire.marker):
        for kind in (b"v", b"e"):
            redis_client.set(redis_key, kind + b"{}\n" + payload)
            assert await f() == 1
    for name in _EXCEPTION_TYPES:
        body = json.dumps({"type": name, "args": ["x"], "attrs": {}}).encode()
        redis_client.set(redis_key, b"e{}\nP" + body)
        assert await f() == 1
    assert calls.count == 1 + 2 * len(_pickles(tripwire.marker)) + len(_EXCEPTION_TYPES)


def test_crafted_invalidation_announcements_reach_no_code(
    redis_url: str, prefix: str, redis_client: redis.Redis, tripwire: Tripwire
) -> None:
    """The L1 listener parses what anyone publishes on the invalidation channel."""
    manager = depcache.get_or_create_cache_manager(
        prefix, config=RedisConfig(url=redis_url, prefix=prefix, l1_size=100)
    )
    calls = Calls()

    @cache_with_deps(cache_manager=manager)
    def f() -> int:
        calls()
        depcache.add_dependency("l1")
        return calls.count

    listener = manager._listener
    assert listener is not None
    assert listener.subscribed.wait(10)
    channel = manager.invalidation_channel
    for payload in [
        *_pickles(tripwire.marker),
        json.dumps({"__dc": "os.system", "v": "x", "dependencies": ["l1"]}).encode(),
        json.dumps({"dependencies": [{"__class__": "os.system"}], "id": 1}).encode(),
        _deep(100_000),
        b"\xff\xfe" * 10,
        b'{"dependencies": ["l1"], "removed": ' + b"9" * 10_000 + b"}",
    ]:
        redis_client.publish(channel, payload)
    assert f() == 1
    manager.invalidate_dependency("l1")  # the listener still works after all that
    wait_for(lambda: f() == 2, what="the L1 to drop the invalidated entry")
    assert listener.is_alive()


# --- pickle: opt-in and signed --------------------------------------------------------------------


def test_pickle_is_not_used_unless_opted_in(
    redis_url: str,
    prefix: str,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    tripwire: Tripwire,
) -> None:
    """Even a correctly signed pickle entry is not unpickled by a manager that did not opt in,
    and having a key in the environment does not switch pickle on."""
    monkeypatch.setenv("DEP_CACHE_PICKLE_KEY", PICKLE_KEY)
    monkeypatch.delenv("DEP_CACHE_SERIALIZER", raising=False)
    plain = depcache.get_or_create_cache_manager(
        prefix, config=RedisConfig(url=redis_url, prefix=prefix)
    )
    memory = depcache.get_or_create_cache_manager(
        f"{prefix}m", config=depcache.ConfigBase(prefix=f"{prefix}m", backend="memory")
    )
    for manager in (plain, memory):
        assert type(manager.serializer) is depcache.JSONSerializer
        with pytest.raises(depcache.SerializationError, match="_WritesMarker"):
            manager.set("evil", _WritesMarker(tripwire.marker))

    f, calls, redis_key, _raw = _cached_entry(plain, redis_client, prefix)
    signed = SignedPickleSerializer(PICKLE_KEY)
    for kind in (b"v", b"e"):
        redis_client.set(redis_key, kind + b"{}\n" + signed.dump(_WritesMarker(tripwire.marker)))
        assert f() == {"computed": calls.count}
    assert calls.count == 3


_SIGNED = SignedPickleSerializer(PICKLE_KEY)
_BENIGN = _SIGNED.dump({"a": (1, 2), "b": b"x"})


@examples(300)
@given(
    index=st.integers(0, len(_BENIGN) - 1),
    xor=st.integers(1, 255),
    cut=st.integers(0, len(_BENIGN) - 1),
    extra=st.binary(min_size=1, max_size=20),
)
def test_any_change_to_a_signed_pickle_is_refused(
    index: int, xor: int, cut: int, extra: bytes
) -> None:
    flipped = bytearray(_BENIGN)
    flipped[index] ^= xor
    for forged in (bytes(flipped), _BENIGN[:cut], _BENIGN + extra, extra + _BENIGN):
        with pytest.raises(ValueError, match=r"signature|not SignedPickleSerializer"):
            _SIGNED.load(forged)
    assert _SIGNED.load(_BENIGN) == {"a": (1, 2), "b": b"x"}


def test_forged_signatures_never_unpickle(tripwire: Tripwire) -> None:
    evil = pickle.dumps(_WritesMarker(tripwire.marker))
    other_key = SignedPickleSerializer("x" * 40)
    forgeries: list[bytes | str] = [
        evil,
        b"SP1" + evil,
        b"SP1" + b"\0" * 32 + evil,
        other_key.dump(_WritesMarker(tripwire.marker)),
        _BENIGN[:35] + evil,  # a real signature over another payload
        _BENIGN + evil,  # appended after a signed payload
        b"SP1" + _SIGNED._sign(b"") + evil,  # the signature of an empty payload
        _BENIGN.decode("latin-1"),  # as text
    ]
    for forged in forgeries:
        with pytest.raises(ValueError, match=r"signature|not SignedPickleSerializer"):
            _SIGNED.load(forged)


def test_pickle_opt_in_without_a_key_fails_without_echoing_it(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEP_CACHE_SERIALIZER", "depcache.serializers.pickle.SignedPickleSerializer")
    monkeypatch.delenv("DEP_CACHE_PICKLE_KEY", raising=False)
    with pytest.raises(depcache.ConfigError, match="DEP_CACHE_PICKLE_KEY"):
        depcache.CacheManager(RedisConfig(url=redis_url, prefix=prefix))
    short = "tiny-secret-key"
    monkeypatch.setenv("DEP_CACHE_PICKLE_KEY", short)
    with pytest.raises(depcache.ConfigError, match="at least 32") as caught:
        depcache.CacheManager(RedisConfig(url=redis_url, prefix=prefix))
    assert short not in _everything_about(caught.value)
    monkeypatch.setenv("DEP_CACHE_PICKLE_KEY", PICKLE_KEY)
    manager = depcache.CacheManager(RedisConfig(url=redis_url, prefix=prefix))
    try:
        assert isinstance(manager.serializer, SignedPickleSerializer)
        assert PICKLE_KEY not in repr(manager.serializer)
        assert PICKLE_KEY not in repr(manager) + repr(manager.config)
    finally:
        manager.close()


# --- crafted bus messages -------------------------------------------------------------------------


def _crafted_bodies(marker: Path) -> list[bytes]:
    return [
        *_pickles(marker),
        json.dumps({"event": "user.updated", "data": {"id": "{0.__class__.__init__}"}}).encode(),
        json.dumps({"event": "user.updated", "data": {"id": {"__reduce__": "os.system"}}}).encode(),
        json.dumps({"event": "os.system", "data": {"args": [f"touch {marker}"]}}).encode(),
        json.dumps({"event": PROBE, "data": {}, "dependencies": [f"{PROBE}.Evil"]}).encode(),
        json.dumps({"py/object": "os.system", "event": "e", "data": {"__class__": "x"}}).encode(),
        json.dumps({"event": "user.updated", "data": {"__dc": "exc", "id": 1}}).encode(),
        _deep(30_000),
    ]


def test_crafted_bus_messages_reach_no_code(tripwire: Tripwire) -> None:
    router = Router()
    router.on_event("user.updated", deps=["user:{id}"])
    letters: list[dict[str, Any]] = []
    applied: list[list[str]] = []

    def apply(deps: Any) -> depcache_celery.FanoutReport:
        applied.append(list(deps))
        return depcache_celery.FanoutReport(list(deps), removed={}, errors={})

    processor = BatchProcessor(
        router=router,
        dead_letter=letters.append,
        hand_off=lambda deps, managers: None,
        max_message_bytes=65536,
        apply=apply,
    )
    tripwire.set_up()
    bodies = _crafted_bodies(tripwire.marker)
    outcome = processor.process(kombu_messages(bodies, RecordingChannel()))
    assert outcome.acked == len(bodies)
    # template fields are filled with the data's text, never looked up or called
    assert "user:{0.__class__.__init__}" in applied[0]
    assert "user:{'__reduce__': 'os.system'}" in applied[0]
    assert all(letter["reason"] for letter in letters)


def _malformed(bodies: list[bytes], router: Router) -> int:
    """How many of ``bodies`` the worker must dead-letter (the content type is not looked at)."""
    count = 0
    for body in bodies:
        try:
            message = depcache_celery.parse_message(body)
            router.dependencies_for(message.event, message.data, message.dependencies)
        except (depcache_celery.BadMessage, depcache_celery.EventError):
            count += 1
    return count


def _publish_pickled_task(broker_url: str, queue: str, payload: Any) -> None:
    """A Celery (protocol 2) task message for depcache.invalidate, pickled: what an attacker
    with access to the broker would send."""
    if payload is None:
        payload = ((["x"],), {}, {"callbacks": None, "errbacks": None, "chain": None})
    body = pickle.dumps(payload)
    task_id = uuid.uuid4().hex
    with Connection(broker_url) as conn:
        Producer(conn.default_channel).publish(
            body,
            exchange="",
            routing_key=queue,
            serializer=None,
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={
                "lang": "py",
                "task": "depcache.invalidate",
                "id": task_id,
                "root_id": task_id,
            },
            delivery_mode=2,
        )


def test_a_real_worker_unpickles_nothing(
    rabbitmq_broker: str,
    names: Names,
    redis_manager: depcache.CacheManager,
    tripwire: Tripwire,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    tripwire.any_new_module = True
    app = make_app(rabbitmq_broker, names)
    router = Router()
    router.on_event("user.updated", deps=["user:{id}"])
    install(app, router=router)
    fill(redis_manager, {"u1": {"user:1"}, "u2": {"user:2"}})
    bodies = _crafted_bodies(tripwire.marker)
    with embedded_worker(app):
        _publish_pickled_task(rabbitmq_broker, names.tasks, _WritesMarker(tripwire.marker))
        _publish_pickled_task(rabbitmq_broker, names.tasks, None)
        for body in bodies:
            publish_event(
                rabbitmq_broker,
                names.exchange,
                "user.updated",
                body,
                content_type="application/x-python-serialize",
                content_encoding="binary",
            )
        publish_event(
            rabbitmq_broker,
            names.exchange,
            "user.updated",
            {"event": "user.updated", "data": {"id": 1}},
        )
        wait_for(lambda: not redis_manager.exists("u1"), what="the valid event")
        app.send_task("depcache.invalidate", args=[["user:2"]])
        wait_for(
            lambda: not redis_manager.exists("u2"), what="the valid task after the pickled ones"
        )
        letters = read_queue(rabbitmq_broker, names.dead, _malformed(bodies, router))
    assert all(json.loads(letter.body)["reason"] for letter in letters)
    assert "untrusted content" in caplog.text or "ContentDisallowed" in caplog.text


# --- credentials ----------------------------------------------------------------------------------

SECRET = "Sup3r-" + "secret-PW"  # never written out whole in this file's assertions' messages
USER = "app"


def _everything_about(exc: BaseException) -> str:
    """Message, repr, and the full traceback with every chained cause."""
    return "\n".join(
        [str(exc), repr(exc), *traceback.format_exception(type(exc), exc, exc.__traceback__)]
    )


def _forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), quote(secret)]


def _assert_hidden(text: str, secret: str = SECRET) -> None:
    for form in _forms(secret):
        assert form not in text, "a credential leaked"


_CONFIGS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "url": ({"url": f"redis://{USER}:{SECRET}@127.0.0.1:1/0"}, {}),
    "url special chars": (
        {"url": f"redis://{USER}:{quote('p@ss/w:rd#' + SECRET, safe='')}@127.0.0.1:1/0"},
        {},
    ),
    "password argument": (
        {"host": "127.0.0.1", "port": 1, "username": USER, "password": SECRET},
        {},
    ),
    "REDIS_URL": ({}, {"REDIS_URL": f"redis://{USER}:{SECRET}@127.0.0.1:1/0"}),
    "REDIS_PASSWORD": (
        {},
        {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": "1", "REDIS_PASSWORD": SECRET},
    ),
    "rediss url": ({"url": f"rediss://{USER}:{SECRET}@127.0.0.1:1/0"}, {}),
    "cluster": ({"url": f"redis://{USER}:{SECRET}@127.0.0.1:1/0", "cluster": True}, {}),
}


@pytest.mark.parametrize("source", list(_CONFIGS))
async def test_credentials_never_appear_in_reprs_errors_or_logs(
    source: str, prefix: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kwargs, env = _CONFIGS[source]
    for name in ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = RedisConfig(prefix=prefix, socket_timeout=1, l1_size=10, **kwargs)
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    texts = [repr(config), str(config), str(config.to_dict()), config.safe_url, repr(manager)]
    texts += [repr(manager.backend), repr(manager.async_backend)]

    @cache_with_deps(cache_manager=manager, silent_backend_errors=True)
    def quiet() -> int:
        return 1

    @cache_with_deps(cache_manager=manager)
    async def loud() -> int:
        return 1

    assert quiet() == 1
    failures: list[BaseException] = []
    for attempt in (
        lambda: manager.get("k"),
        lambda: manager.set("k", 1, dependencies={"d"}),
        lambda: manager.invalidate_dependency("d"),
        lambda: depcache.invalidate("d"),
    ):
        with pytest.raises(depcache.DepCacheError) as caught:
            attempt()
        failures.append(caught.value)
    for coroutine in (loud(), manager.ainvalidate_dependency("d")):
        with pytest.raises(depcache.BackendError) as caught_async:
            await coroutine
        failures.append(caught_async.value)
    await asyncio.sleep(0.3)  # the L1 listener thread fails to connect, and logs it
    texts += [_everything_about(exc) for exc in failures]
    texts += [caplog.text, *(str(r.args) for r in caplog.records)]
    assert "127.0.0.1:1" in "".join(texts)
    for text in texts:
        _assert_hidden(text)
        _assert_hidden(text, "p@ss/w:rd#" + SECRET)


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    """A Redis server that requires a password (and has an ACL user ``app``)."""
    with redis_server("--requirepass", SECRET) as server:
        client = redis.Redis(port=server.port, password=SECRET)
        client.acl_setuser(
            USER,
            enabled=True,
            passwords=[f"+{SECRET}"],
            keys=["*"],
            channels=["*"],
            commands=["+@all"],
        )
        client.close()
        yield server


def test_working_and_failing_connections_log_no_credentials(
    password_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = RedisConfig(
        url=f"redis://{USER}:{SECRET}@127.0.0.1:{password_server.port}/0", prefix=prefix
    )
    manager = depcache.get_or_create_cache_manager(prefix, config=good)

    @cache_with_deps(cache_manager=manager)
    def f() -> int:
        depcache.add_dependency("d")
        return 1

    assert f() == 1
    assert f() == 1
    assert manager.invalidate_dependency("d") == 1
    wrong_secret = "Wr0ng-" + SECRET
    wrong = RedisConfig(
        url=f"redis://{USER}:{wrong_secret}@127.0.0.1:{password_server.port}/0",
        prefix=f"{prefix}w",
    )
    failing = depcache.get_or_create_cache_manager(f"{prefix}w", config=wrong)
    with pytest.raises(depcache.BackendError) as caught:
        failing.get("k")
    text = _everything_about(caught.value) + caplog.text + repr(failing) + repr(wrong)
    _assert_hidden(text)
    _assert_hidden(text, wrong_secret)


def test_a_password_in_the_query_string_is_masked(prefix: str) -> None:
    config = RedisConfig(
        url=f"redis://127.0.0.1:1/0?password={SECRET}", prefix=prefix, socket_timeout=1
    )
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    with pytest.raises(depcache.BackendError) as caught:
        manager.get("k")
    _assert_hidden(repr(config) + config.safe_url + _everything_about(caught.value))


@pytest.mark.parametrize("char", ["/", "?", "#"])
def test_an_unquoted_special_character_does_not_reveal_the_password(char: str, prefix: str) -> None:
    # redis-py would read the host from inside such a password: refused, naming the fix
    secret = f"pa{char}{SECRET}"
    with pytest.raises(depcache.ConfigError, match="percent-encode") as caught:
        RedisConfig(url=f"redis://{USER}:{secret}@127.0.0.1:1/0", prefix=prefix)
    assert f"redis://{USER}:***@127.0.0.1:1/0" in str(caught.value)
    _assert_hidden(_everything_about(caught.value), secret)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "depcache.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_cli_output_shows_no_credentials(password_server: RedisServer, prefix: str) -> None:
    dead = f"redis://{USER}:{SECRET}@127.0.0.1:1/0"
    live = f"redis://{USER}:{SECRET}@127.0.0.1:{password_server.port}/0"
    runs = {
        "stats dead": (_cli("stats", "--url", dead, "--prefix", prefix), 1),
        "watch dead": (_cli("watch", "--url", dead, "--count", "1"), 1),
        "cluster dead": (_cli("stats", "--url", dead, "--cluster"), 1),
        "env dead": (_cli("stats", env={"REDIS_URL": dead}), 1),
        "bad scheme": (_cli("stats", "--url", f"http://{USER}:{SECRET}@127.0.0.1:1/0"), 2),
        "stats live": (_cli("stats", "--url", live, "--prefix", prefix), 0),
        "invalidate live": (_cli("invalidate", "d", "--url", live, "--prefix", prefix), 0),
    }
    for name, (result, status) in runs.items():
        assert result.returncode == status, (name, result.stderr)
        assert "Traceback" not in result.stderr, name
        _assert_hidden(result.stdout + result.stderr)
    assert "***" in runs["stats live"][0].stdout


def test_worker_logs_and_dead_letters_show_no_credentials(
    password_server: RedisServer,
    redis_manager: depcache.CacheManager,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker URL and a failing manager's URL both hold a password; neither shows in the
    worker's logs (all loggers at DEBUG) nor in the dead letters it writes."""
    caplog.set_level(logging.DEBUG)
    manager_secret = "Mgr-" + SECRET
    depcache.get_or_create_cache_manager(
        f"{prefix}down",
        config=RedisConfig(
            url=f"redis://{USER}:{manager_secret}@127.0.0.1:1/0",
            prefix=f"{prefix}down",
            socket_timeout=1,
        ),
    )
    broker = f"redis://{USER}:{SECRET}@127.0.0.1:{password_server.port}/0"
    uid = uuid.uuid4().hex[:8]
    names = Names(uid, f"s.{uid}.events", f"s.{uid}.worker", f"s.{uid}.dead", f"s.{uid}.tasks")
    app = make_app(broker, names, depcache_retry_max_age=0.001)
    router = Router()
    router.on_event("user.updated", deps=["user:{id}"])
    install(app, router=router)
    fill(redis_manager, {"u1": {"user:1"}})
    with embedded_worker(app):
        publish_event(broker, names.exchange, "user.updated", b"{not json")
        publish_event(
            broker, names.exchange, "user.updated", {"event": "user.updated", "data": {"id": 1}}
        )
        wait_for(lambda: not redis_manager.exists("u1"), what="the event on the working manager")
        letters = read_queue(broker, names.dead, 2, timeout=30)
    kinds = sorted(json.loads(letter.body)["kind"] for letter in letters)
    assert kinds == ["expired", "malformed"]
    texts = [
        caplog.text,
        *(
            letter.body.decode() if isinstance(letter.body, bytes) else str(letter.body)
            for letter in letters
        ),
    ]
    texts += [json.dumps(letter.headers, default=repr) for letter in letters]
    texts += [json.dumps(depcache_celery.stats.snapshot(), default=repr), repr(app.conf.humanize())]
    assert "127.0.0.1:1" in "".join(texts)  # the failure is reported, by server
    for text in texts:
        _assert_hidden(text)
        _assert_hidden(text, manager_secret)


# --- keys: callers cannot make their call share another caller's entry ---------------------------


def test_keyword_names_cannot_forge_another_calls_key(redis_manager: depcache.CacheManager) -> None:
    @cache_with_deps(cache_manager=redis_manager)
    def report(**filters: str) -> str:
        return "confidential" if filters == {"role": "admin", "user": "alice"} else "public"

    forged = {"role=s'admin',user": "alice"}
    assert report(**forged) == "public"
    assert report(role="admin", user="alice") == "confidential"
