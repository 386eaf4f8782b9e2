"""Bad input, property-based: arguments that make keys, cached values, corrupted entries and bus
messages. Whatever hypothesis throws at it, depcache keeps entries apart, returns values exactly
(or refuses them clearly), treats garbage in Redis as a miss, and the worker routes or
dead-letters every message without crashing.

``DEPCACHE_RELIABILITY_PROFILE=long`` runs ten times more examples
(see tests/support/strategies.py).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import itertools
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from kombu import Connection, Queue

import depcache
import depcache_celery
from depcache import JSONSerializer, cache_with_deps, current_cache_key
from depcache.call._entry import CorruptEntry, decode_entry
from depcache_celery import (
    BadMessage,
    BatchProcessor,
    BusMessage,
    EventError,
    FanoutReport,
    Router,
    install,
    parse_message,
)
from depcache_celery.worker.fanout import unique
from tests.support.celery_fixtures import (
    Names,
    embedded_worker,
    make_app,
    publish_event,
    read_queue,
    wait_for,
)
from tests.support.helpers import Calls, assert_same, entry_key
from tests.support.strategies import (
    ARGUMENTS,
    HASHABLE_VALUES,
    JSON_VALUES,
    SOME_ARGUMENTS,
    SUPPORTED_VALUES,
    UNSUPPORTED_HASHABLE,
    UNSUPPORTED_UNHASHABLE,
    RecordingChannel,
    bus_bodies,
    canonical,
    examples,
    kombu_messages,
    lenient_decode,
    lookalike,
    reordered,
)


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
    ]
)
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Memory and standalone Redis (a cluster moves the same bytes; see test_cluster.py)."""
    return str(request.param)


_calls_ids = itertools.count()


def _describer(manager: depcache.CacheManager) -> tuple[Callable[..., str], Calls]:
    """A cached function returning an exact, type-aware description of its arguments."""
    calls = Calls()

    @cache_with_deps(cache_manager=manager)
    def describe(n: int, *args: Any, **kwargs: Any) -> str:
        calls(n)
        return canonical(list(args)) + "|" + canonical(kwargs)

    return describe, calls


# --- keys -----------------------------------------------------------------------------------------


@examples(150)
@given(a=SOME_ARGUMENTS, data=st.data())
def test_arguments_share_an_entry_exactly_when_they_are_equal(
    manager: depcache.CacheManager, a: Any, data: st.DataObject
) -> None:
    """Distinct values (by type and value) never share an entry; equal ones always do."""
    b = data.draw(st.one_of(lookalike(a), lookalike(a), lookalike(a), ARGUMENTS), label="b")
    describe, calls = _describer(manager)
    n = next(_calls_ids)
    assert describe(n, a) == canonical([a]) + "|dict()"
    assert describe(n, b) == canonical([b]) + "|dict()"  # never the entry of ``a``
    assert calls.count == (1 if canonical(a) == canonical(b) else 2)


@examples(80)
@given(value=ARGUMENTS)
def test_equal_arguments_built_in_another_order_hit(
    manager: depcache.CacheManager, value: Any
) -> None:
    describe, calls = _describer(manager)
    n = next(_calls_ids)
    expected = canonical([value]) + "|dict()"
    assert describe(n, value) == expected
    assert describe(n, reordered(copy.deepcopy(value))) == expected
    assert describe(n, value=value) != expected  # a keyword is not a positional argument
    assert calls.count == 2


_NAMES = st.sampled_from(["a", "b", "user_id", "x1", "_", "ключ", "ß", "self_", "kwargs"])


@examples(60)
@given(kwargs=st.dictionaries(_NAMES, ARGUMENTS, min_size=1, max_size=5), other=ARGUMENTS)
def test_keyword_order_does_not_matter_but_values_do(
    manager: depcache.CacheManager, kwargs: dict[str, Any], other: Any
) -> None:
    describe, calls = _describer(manager)
    n = next(_calls_ids)
    expected = "list()|" + canonical(kwargs)
    assert describe(n, **kwargs) == expected
    assert describe(n, **dict(reversed(list(kwargs.items())))) == expected
    assert calls.count == 1
    name = sorted(kwargs)[0]
    changed = {**kwargs, name: other}
    assert describe(n, **changed) == "list()|" + canonical(changed)
    assert calls.count == (1 if canonical(other) == canonical(kwargs[name]) else 2)


def test_ordered_dicts_in_another_order_do_not_share_an_entry(
    manager: depcache.CacheManager,
) -> None:
    calls = Calls()

    @cache_with_deps(cache_manager=manager)
    def first_key(d: OrderedDict[str, int]) -> str:
        calls(d)
        return next(iter(d))

    assert first_key(OrderedDict(a=1, b=2)) == "a"
    assert first_key(OrderedDict(b=2, a=1)) == "b"


# --- values ---------------------------------------------------------------------------------------


@examples(300)
@given(value=SUPPORTED_VALUES)
def test_json_serializer_round_trips_every_supported_value(value: Any) -> None:
    serializer = JSONSerializer()
    assert_same(value, serializer.load(serializer.dump(value)))


@examples(100)
@given(value=SUPPORTED_VALUES)
def test_supported_values_round_trip_through_the_cache(
    manager: depcache.CacheManager, value: Any
) -> None:
    calls = Calls()
    n = next(_calls_ids)

    @cache_with_deps(cache_manager=manager)
    def f(k: int) -> Any:
        calls(k)
        return value

    assert f(n) is value
    assert_same(value, f(n))
    assert calls.count == 1
    manager.set(f"manual:{n}", value, dependencies={"d"})
    assert_same(value, manager.get(f"manual:{n}"))


def test_a_named_fixed_offset_zone_keeps_its_name(manager: depcache.CacheManager) -> None:
    cet = dt.timezone(dt.timedelta(hours=1), "CET")
    value = [dt.datetime(2024, 1, 1, 12, tzinfo=cet), dt.time(12, tzinfo=cet)]
    manager.set("named", value)
    got = manager.get("named")
    assert [v.tzname() for v in got] == ["CET", "CET"]


_WRAPPERS = st.lists(
    st.sampled_from(["list", "tuple", "dict value", "dict key", "set", "frozenset"]), max_size=4
)


@st.composite
def _planted(draw: st.DrawFn) -> tuple[Any, str]:
    """A supported structure with one unsupported value somewhere inside; and its type name."""
    hashable = draw(st.booleans())
    bad, name = draw(st.sampled_from(UNSUPPORTED_HASHABLE if hashable else UNSUPPORTED_UNHASHABLE))
    value: Any = bad
    for drawn in draw(_WRAPPERS):
        sibling = draw(HASHABLE_VALUES)
        needs_hashable = drawn in ("dict key", "set", "frozenset")
        wrapper = "list" if needs_hashable and not hashable else drawn
        if wrapper == "list":
            value, hashable = [sibling, value], False
        elif wrapper == "tuple":
            value = (value, sibling)
        elif wrapper == "dict value":
            value, hashable = {sibling: value}, False
        elif wrapper == "dict key":
            value, hashable = {value: draw(SUPPORTED_VALUES), sibling: 1}, False
        elif wrapper == "set":
            value, hashable = {value, sibling}, False
        else:
            value = frozenset({value, sibling})
    return value, name


@examples(100)
@given(planted=_planted())
def test_unsupported_values_are_refused_naming_the_type(
    manager: depcache.CacheManager, planted: tuple[Any, str]
) -> None:
    value, name = planted
    calls = Calls()
    n = next(_calls_ids)

    @cache_with_deps(cache_manager=manager)
    def f(k: int) -> Any:
        calls(k)
        return value

    for _ in range(2):  # refused each time: nothing was stored
        with pytest.raises(depcache.SerializationError, match=name) as caught:
            f(n)
        assert isinstance(caught.value, TypeError)
    assert calls.count == 2
    with pytest.raises(depcache.SerializationError, match=name):
        manager.set(f"manual:{n}", value)
    assert not manager.exists(f"manual:{n}")


# --- corrupted entries ----------------------------------------------------------------------------


@st.composite
def _corrupted(draw: st.DrawFn, raw: bytes) -> bytes:  # noqa: PLR0911 - one branch per kind
    """``raw`` (a real entry) damaged in one of several ways."""
    header = raw.split(b"\n", 1)[0]
    kind = draw(
        st.sampled_from(["random", "truncate", "flip", "insert", "payload", "json", "kind"])
    )
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == "flip":
        out = bytearray(raw)
        for index in draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4)):
            out[index] ^= draw(st.integers(1, 255))
        return bytes(out)
    if kind == "insert":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=20)) + raw[at:]
    if kind == "payload":
        mark = draw(st.sampled_from([b"P", b"T", b"", b"SP1"]))
        return header + b"\n" + mark + draw(st.binary(max_size=100))
    if kind == "json":
        mark = draw(st.sampled_from([b"P", b"T"]))
        data = draw(JSON_VALUES | st.dictionaries(st.just("__dc"), JSON_VALUES) | _TAGGED)
        return header + b"\n" + mark + json.dumps(data).encode()
    return draw(st.sampled_from([b"v", b"V", b"e", b"E", b"x", b"\x00"])) + raw[1:]


_TAGS = ["t", "s", "fs", "d", "i", "f", "b", "dt", "dtz", "dtf", "tmf", "da", "tm", "td"]
_TAGS += ["dec", "u", "exc", "zz"]
_TAGGED = st.fixed_dictionaries(
    {
        "__dc": st.sampled_from(_TAGS),
        "v": JSON_VALUES,
    }
)


@pytest.mark.redis
@examples(150)
@given(value=SUPPORTED_VALUES, data=st.data())
def test_corrupted_entries_are_misses_and_overwritten(
    redis_manager: depcache.CacheManager,
    redis_client: redis.Redis,
    prefix: str,
    value: Any,
    data: st.DataObject,
) -> None:
    """Damaged entry bytes never raise: an undecodable entry is recomputed and overwritten; one
    that still decodes (no checksum can tell) is served as what it decodes to."""
    calls = Calls()
    keys: list[str] = []
    n = next(_calls_ids)

    @cache_with_deps(cache_manager=redis_manager)
    def f(k: int) -> Any:
        calls(k)
        keys.append(current_cache_key() or "")
        depcache.add_dependency("dep")  # constant: the entry bytes must not vary on replay
        return value

    f(n)
    redis_key = entry_key(prefix, keys[0])
    raw = redis_client.get(redis_key)
    assert isinstance(raw, bytes)
    damaged = data.draw(_corrupted(raw), label="damaged")
    redis_client.set(redis_key, damaged)
    serializer = redis_manager.serializer
    try:
        served: Any = lenient_decode(serializer, damaged)
    except CorruptEntry:
        served = _UNREADABLE
    try:
        strict: Any = decode_entry(serializer, damaged).value
    except CorruptEntry:
        strict = _UNREADABLE
    got = f(n)
    if calls.count == 1:  # a hit: what the damaged bytes still decode to
        assert served is not _UNREADABLE
        assert_same(served, got)
        return
    # the epoch and dependencies in the header are checked on every hit: damage there may void
    # a readable entry (say, an epoch below the floor); a readable payload behind an intact
    # header must be served
    header = raw[: raw.index(b"\n") + 1]
    if damaged.startswith(header):
        assert strict is _UNREADABLE, "a readable entry was not served"
    assert_same(value, got)
    stored = redis_client.get(redis_key)
    assert isinstance(stored, bytes)
    assert stored != damaged
    assert_same(value, decode_entry(serializer, stored).value)


_UNREADABLE = object()


@pytest.mark.redis
def test_an_entry_key_of_another_type_is_a_miss_and_overwritten(
    redis_manager: depcache.CacheManager, redis_client: redis.Redis, prefix: str
) -> None:
    keys: list[str] = []

    @cache_with_deps(cache_manager=redis_manager)
    def f() -> int:
        keys.append(current_cache_key() or "")
        return 1

    assert f() == 1
    redis_key = entry_key(prefix, keys[0])
    redis_client.delete(redis_key)
    redis_client.hset(redis_key, "field", "value")
    assert f() == 1
    assert redis_client.type(redis_key) == b"string"
    assert f() == 1
    assert len(keys) == 2


@pytest.mark.redis
@pytest.mark.parametrize("epoch", [b" %d", b"%d.0", b"%de0", b"+%d", b"0x%x", b"-%d", b"", b"inf"])
def test_an_entry_whose_epoch_is_not_digits_is_a_miss_and_overwritten(
    redis_manager: depcache.CacheManager, redis_client: redis.Redis, prefix: str, epoch: bytes
) -> None:
    """The lookup script checks each marker against the entry's epoch as written (``ZCOUNT``
    from ``-S``): an epoch Lua would read as a number but Redis would refuse as a score, or
    read otherwise, makes the entry unreadable, never an error."""
    keys: list[str] = []

    @cache_with_deps(cache_manager=redis_manager)
    def f() -> int:
        keys.append(current_cache_key() or "")
        depcache.add_dependency("row")
        return len(keys)

    assert f() == 1
    redis_key = entry_key(prefix, keys[0])
    raw = redis_client.get(redis_key)
    assert isinstance(raw, bytes)
    brace = raw.index(b"{")
    if b"%" in epoch:  # the entry's own epoch, written otherwise (so not below the floor)
        epoch = epoch % int(raw[1:brace])
    redis_client.set(redis_key, raw[:1] + epoch + raw[brace:])
    assert f() == 2  # a miss, recomputed
    assert f() == 2  # and overwritten: a hit


# --- bus messages: parsing ------------------------------------------------------------------------


def _parse(body: bytes | str, max_bytes: int) -> BusMessage | BadMessage:
    try:
        return parse_message(body, max_bytes=max_bytes)
    except BadMessage as exc:
        return exc


def _check_parsed(message: BusMessage | BadMessage) -> None:
    """A valid message has fields of the documented types; a bad one says why."""
    if isinstance(message, BadMessage):
        assert message.reason
        assert str(message) == message.reason
        return
    assert isinstance(message.event, str)
    assert message.event
    assert isinstance(message.data, dict)
    assert message.id is None or isinstance(message.id, str)
    if message.dependencies is not None:
        assert all(isinstance(d, str) and d for d in message.dependencies)


@examples(300)
@given(body=bus_bodies(surrogates=True) | st.text(st.characters(exclude_categories=())))
def test_parse_message_returns_a_valid_message_or_says_why(body: bytes | str) -> None:
    _check_parsed(_parse(body, max_bytes=4096))


@examples(100)
@given(value=JSON_VALUES)
def test_any_json_document_parses_or_says_why(value: Any) -> None:
    _check_parsed(_parse(json.dumps(value), max_bytes=65536))


def test_a_huge_integer_is_a_bad_message() -> None:
    with pytest.raises(BadMessage, match="not JSON"):
        parse_message('{"event": "user.updated", "data": {"id": ' + "7" * 5000 + "}}")


# --- bus messages: batches ------------------------------------------------------------------------


def _router() -> Router:
    router = Router()
    router.on_event("user.updated", deps=["user:{id}", "posts:user:{id}"])
    router.on_event("order.paid", deps=["order:{order[id]}", "n:{n:>4}"])

    @router.on_event("boom")
    def boom(data: dict[str, Any]) -> Iterable[str]:
        return [f"boom:{data['n']}"] if data.get("n") else data.get("id")  # type: ignore[return-value]

    return router


def _expected(body: bytes, max_bytes: int) -> tuple[list[str] | None, str | None]:
    """What the worker must do with ``body``: its dependencies, or the dead letter's reason."""
    try:
        message = parse_message(body, max_bytes=max_bytes)
        return _router().dependencies_for(message.event, message.data, message.dependencies), None
    except (BadMessage, EventError) as exc:
        return None, str(exc)


def _letter_body(letter: dict[str, Any]) -> bytes:
    if "body" in letter:
        return str(letter["body"]).encode("utf-8")
    return base64.b64decode(letter["body_base64"])


class _Recorder:
    def __init__(self) -> None:
        self.applied: list[list[str]] = []
        self.dead: list[dict[str, Any]] = []

    def apply(self, deps: Iterable[str]) -> FanoutReport:
        listed = list(deps)
        self.applied.append(listed)
        return FanoutReport(listed, removed={"m": len(listed)}, errors={})

    def dead_letter(self, letter: dict[str, Any]) -> None:
        json.dumps(letter, default=repr, ensure_ascii=False).encode("utf-8")  # publishable
        self.dead.append(letter)

    def hand_off(self, deps: list[str], managers: list[str]) -> None:
        raise AssertionError("nothing failed: nothing to hand off")


@examples(150)
@given(bodies=st.lists(bus_bodies(surrogates=True), min_size=1, max_size=8))
def test_a_batch_routes_or_dead_letters_every_message(bodies: list[bytes]) -> None:
    max_bytes = 300
    recorder, channel = _Recorder(), RecordingChannel()
    processor = BatchProcessor(
        router=_router(),
        dead_letter=recorder.dead_letter,
        hand_off=recorder.hand_off,
        max_message_bytes=max_bytes,
        apply=recorder.apply,
    )
    outcome = processor.process(kombu_messages(bodies, channel))

    expected = [_expected(body, max_bytes) for body in bodies]
    reasons = [reason for _deps, reason in expected if reason is not None]
    assert [letter["reason"] for letter in recorder.dead] == reasons
    assert all(reasons)
    dead_bodies = [body for body, (_deps, reason) in zip(bodies, expected, strict=True) if reason]
    assert [_letter_body(letter) for letter in recorder.dead] == dead_bodies
    assert all(letter["kind"] == "malformed" for letter in recorder.dead)
    deps = unique(dep for routed, _reason in expected for dep in routed or ())
    assert recorder.applied == ([deps] if deps else [])
    assert sorted(channel.acked) == list(range(len(bodies)))  # each acknowledged exactly once
    assert (outcome.received, outcome.acked, outcome.unacked) == (len(bodies), len(bodies), 0)
    assert outcome.dead_lettered == len(reasons)


@pytest.mark.redis
def test_an_unencodable_dependency_does_not_hold_back_the_rest_of_its_batch(
    redis_manager: depcache.CacheManager,
) -> None:
    redis_manager.set("u1", 1, dependencies={"user:1"})
    recorder, channel = _Recorder(), RecordingChannel()
    handed_off: list[list[str]] = []
    processor = BatchProcessor(
        router=_router(),
        dead_letter=recorder.dead_letter,
        hand_off=lambda deps, managers: handed_off.append(deps),
        max_message_bytes=4096,
        apply=lambda deps: depcache_celery.apply(deps, [redis_manager.name]),
    )
    bodies = [
        json.dumps({"event": "user.updated", "data": {"id": 1}}).encode(),
        json.dumps({"event": "user.updated", "data": {"id": "\ud800"}}).encode(),
    ]
    outcome = processor.process(kombu_messages(bodies, channel))
    assert not redis_manager.exists("u1")
    assert outcome.dead_lettered == 1
    assert handed_off == []


def test_a_huge_integer_does_not_dead_letter_the_rest_of_its_batch() -> None:
    recorder, channel = _Recorder(), RecordingChannel()
    processor = BatchProcessor(
        router=_router(),
        dead_letter=recorder.dead_letter,
        hand_off=recorder.hand_off,
        max_message_bytes=65536,
        apply=recorder.apply,
    )
    bodies = [
        json.dumps({"event": "user.updated", "data": {"id": 1}}).encode(),
        ('{"event": "user.updated", "data": {"id": ' + "7" * 5000 + "}}").encode(),
    ]
    outcome = processor.process(kombu_messages(bodies, channel))
    assert recorder.applied == [["user:1", "posts:user:1"]]
    assert outcome.dead_lettered == 1
    assert "internal error" not in recorder.dead[0]["reason"]


# --- bus messages: a real worker ------------------------------------------------------------------


@pytest.mark.redis
@examples(1)
@given(bodies=st.lists(bus_bodies(surrogates=False), min_size=30, max_size=30))
def test_a_real_worker_routes_or_dead_letters_random_bodies(
    rabbitmq_broker: str,
    names: Names,
    redis_manager: depcache.CacheManager,
    bodies: list[bytes],
) -> None:
    max_bytes = 300
    app = make_app(rabbitmq_broker, names, depcache_max_message_bytes=max_bytes)
    install(app, router=_router())
    expected = [_expected(body, max_bytes) for body in bodies]
    routed = unique(dep for deps, _reason in expected for dep in deps or ())
    for i, dep in enumerate(routed):
        redis_manager.set(f"routed:{i}", i, dependencies={dep})
    final = f"user:final-{next(_calls_ids)}"
    redis_manager.set("final", 0, dependencies={final})
    reasons = sorted(reason for _deps, reason in expected if reason is not None)
    depcache_celery.stats.reset()

    with embedded_worker(app):
        for body in bodies:
            publish_event(rabbitmq_broker, names.exchange, "user.updated", body)
        valid = {"event": "user.updated", "data": {"id": final.removeprefix("user:")}}
        publish_event(rabbitmq_broker, names.exchange, "user.updated", valid)
        wait_for(lambda: not redis_manager.exists("final"), what="the valid event after them")
        letters = read_queue(rabbitmq_broker, names.dead, len(reasons)) if reasons else []

    for i in range(len(routed)):
        assert not redis_manager.exists(f"routed:{i}"), routed[i]
    got = sorted(json.loads(letter.body)["reason"] for letter in letters)
    assert got == reasons
    assert all(got)
    assert read_queue_empty(rabbitmq_broker, names.dead)
    assert depcache_celery.stats.snapshot()["dead_letters"] == (
        {"malformed": len(reasons)} if reasons else {}
    )


def read_queue_empty(broker_url: str, queue_name: str) -> bool:
    """True when the durable queue holds no message."""
    with Connection(broker_url) as conn:
        queue = Queue(queue_name, durable=True, auto_delete=False)(conn.default_channel)
        queue.declare()
        return queue.get(no_ack=True) is None
