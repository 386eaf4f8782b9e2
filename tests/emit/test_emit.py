"""Emitting from app code (issue #6): emit/aemit/invalidate_later reach a real worker that
invalidates real Redis; bad input is refused; deferral until commit (a deferred() block,
SQLAlchemy on the machine's PostgreSQL, Django in a subprocess); @invalidates on a Celery task;
forwarding a manager's invalidations without loops."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy
from celery.signals import before_task_publish
from kombu import Connection, Exchange, Queue
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

import depcache
import depcache_celery
import depcache_celery.sqlalchemy
from depcache_celery import Router, install
from tests.support.celery_fixtures import Managers, Names, embedded_worker, fill, make_app, wait_for
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.redis

SUPPORT = Path(__file__).resolve().parents[1] / "support"


def _router() -> Router:
    router = Router()
    router.on_event("user.updated", deps=["user:{id}"])
    return router


def _gone(managers: Managers, *keys: str) -> bool:
    return not any(m.exists(k) for m in managers for k in keys)


@pytest.fixture
def observer(rabbitmq_broker: str, names: Names) -> Iterator[Callable[[], int]]:
    """A queue bound to the test's exchange: returns how many events were published so far."""
    queue_name = f"{names.queue}.observer"
    exchange = Exchange(names.exchange, type="topic", durable=True, auto_delete=False)
    with Connection(rabbitmq_broker) as conn:
        Queue(queue_name, exchange, routing_key="#", durable=True)(conn.default_channel).declare()

    def count() -> int:
        with Connection(rabbitmq_broker) as conn:
            queue = Queue(queue_name, durable=True)(conn.default_channel)
            return int(queue.queue_declare(passive=True).message_count)

    yield count
    with Connection(rabbitmq_broker) as conn:
        conn.default_channel.queue_delete(queue_name)


# -- input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: depcache_celery.build_event(""), ValueError, "must not be empty"),
        (lambda: depcache_celery.build_event(3), TypeError, "must be a string"),  # type: ignore[arg-type]
        (lambda: depcache_celery.build_event("e", [1]), TypeError, "data must be a mapping"),  # type: ignore[arg-type]
        (lambda: depcache_celery.build_event("e", {1: 2}), TypeError, "keys must be strings"),  # type: ignore[dict-item]
        (lambda: depcache_celery.build_event("e", {"a": object()}), ValueError, "not JSON"),
        (lambda: depcache_celery.build_event("e", {"a": float("nan")}), ValueError, "not JSON"),
        (lambda: depcache_celery.build_event("e", {"a": {1, 2}}), ValueError, "set"),
        (lambda: depcache_celery.build_event("e", {"a": "\ud800"}), ValueError, "valid Unicode"),
        (lambda: depcache_celery.build_event("e", dependencies="x"), TypeError, "list"),
        (lambda: depcache_celery.build_event("e", dependencies=[""]), ValueError, "non-empty"),
        (lambda: depcache_celery.build_event("e", id=""), TypeError, "id"),
        (
            lambda: depcache_celery.build_event("e", {"a": "x" * 70_000}),
            ValueError,
            "over the limit of 65536",
        ),
        (depcache_celery.invalidate_later, ValueError, "at least one"),
        (lambda: depcache_celery.invalidate_later(""), ValueError, "non-empty"),
        (lambda: depcache_celery.invalidate_later(b"x"), ValueError, "non-empty"),  # type: ignore[arg-type]
        (lambda: depcache_celery.invalidates()(len), ValueError, "at least one"),
        (lambda: depcache_celery.invalidates("u:{nope}")(lambda a: a), ValueError, "'nope'"),
        (lambda: depcache_celery.invalidates("u:{0}")(lambda a: a), ValueError, "positional"),
        (lambda: depcache_celery.invalidates("u", via="x")(len), ValueError, "via"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_refused_with_a_clear_error(
    call: Callable[[], Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        call()


def test_the_event_body_is_what_the_worker_parses() -> None:
    event = depcache_celery.build_event("user.updated", {"id": 7}, id="e-1", dependencies=["x"])
    parsed = depcache_celery.parse_message(event.body)
    assert (parsed.event, parsed.data, parsed.id, parsed.dependencies) == (
        "user.updated",
        {"id": 7},
        "e-1",
        ["x"],
    )


def test_an_unreachable_broker_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(depcache_celery.EmitError) as caught:
        depcache_celery.emit(
            "user.updated",
            {"id": 1},
            broker_url="amqp://guest:s3cret@127.0.0.1:1//",
            retry_policy={"max_retries": 1, "interval_start": 0},
        )
    text = str(caught.value)
    assert "127.0.0.1:1" in text
    assert "'user.updated'" in text
    assert "s3cret" not in text


# -- to a real worker ----------------------------------------------------------------------------
def test_emit_reaches_the_worker(broker_url: str, names: Names, two_managers: Managers) -> None:
    app = make_app(broker_url, names)
    install(app, router=_router())
    for manager in two_managers:
        fill(manager, {"u1": {"user:1"}, "u2": {"user:2"}, "x": {"extra"}})
    with embedded_worker(app):
        event_id = depcache_celery.emit("user.updated", {"id": 1}, app=app)
        depcache_celery.emit("nobody.listens", {}, dependencies=["extra"], app=app)
        wait_for(lambda: _gone(two_managers, "u1", "x"), what="the emitted events")
    assert len(event_id) == 32
    assert all(m.exists("u2") for m in two_managers)


def test_emit_on_a_broker_url_uses_the_environment_settings(
    rabbitmq_broker: str,
    names: Names,
    two_managers: Managers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEPCACHE_EXCHANGE", names.exchange)
    app = make_app(rabbitmq_broker, names)
    install(app, router=_router())
    fill(two_managers[0], {"u3": {"user:3"}})
    with embedded_worker(app):
        depcache_celery.emit("user.updated", {"id": 3}, broker_url=rabbitmq_broker)
        wait_for(lambda: _gone(two_managers, "u3"), what="the event")


async def test_aemit_does_not_block_the_loop(
    rabbitmq_broker: str, names: Names, two_managers: Managers
) -> None:
    app = make_app(rabbitmq_broker, names)
    install(app, router=_router())
    fill(two_managers[1], {"u4": {"user:4"}, "u5": {"user:5"}})
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    with embedded_worker(app):
        task = asyncio.create_task(ticker())
        ids = await asyncio.gather(
            depcache_celery.aemit("user.updated", {"id": 4}, app=app),
            depcache_celery.aemit("user.updated", {"id": 5}, app=app),
        )
        task.cancel()
        deadline = time.monotonic() + 10
        while not _gone(two_managers, "u4", "u5") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert _gone(two_managers, "u4", "u5")
    assert len(set(ids)) == 2
    assert ticks > 0  # the loop ran while the publishes were in flight


def test_invalidate_later_sends_the_task(
    broker_url: str, names: Names, two_managers: Managers
) -> None:
    app = make_app(broker_url, names)
    install(app)
    a, b = two_managers
    for manager in two_managers:
        fill(manager, {"k": {"d1"}, "j": {"d2"}})
    with embedded_worker(app):
        depcache_celery.invalidate_later("d1", app=app)
        depcache_celery.invalidate_later("d2", managers=[a.name], app=app)
        wait_for(lambda: _gone(two_managers, "k") and not a.exists("j"), what="the tasks")
    assert b.exists("j")  # d2 was only for manager a


# -- deferral until commit -----------------------------------------------------------------------
def test_a_deferred_block_sends_on_success_and_discards_on_error(
    rabbitmq_broker: str, names: Names, observer: Callable[[], int]
) -> None:
    app = make_app(rabbitmq_broker, names)
    with depcache_celery.deferred() as pending:
        depcache_celery.emit("user.updated", {"id": 1}, app=app)
        with depcache_celery.deferred():  # nested: joins the outer block
            depcache_celery.emit("user.updated", {"id": 2}, app=app)
        assert len(pending) == 2
        assert observer() == 0
    assert observer() == 2

    def failing_block(user_id: int) -> None:
        with depcache_celery.deferred():
            depcache_celery.emit("user.updated", {"id": user_id}, app=app)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        failing_block(3)
    with depcache_celery.deferred():
        with pytest.raises(RuntimeError):
            failing_block(4)  # nested and failed: dropped, the outer block goes on
        depcache_celery.emit("user.updated", {"id": 5}, app=app)
    assert observer() == 3


def test_a_commit_hook_of_your_own(
    rabbitmq_broker: str, names: Names, observer: Callable[[], int]
) -> None:
    app = make_app(rabbitmq_broker, names)
    held: list[Callable[[], None]] = []

    def hook(send: Callable[[], None]) -> bool:
        held.append(send)
        return True

    depcache_celery.register_commit_hook(hook)
    try:
        depcache_celery.emit("user.updated", {"id": 1}, app=app)
    finally:
        assert depcache_celery.unregister_commit_hook(hook)
    assert observer() == 0
    assert len(held) == 1
    held[0]()
    assert observer() == 1


@pytest.fixture
def pg_engine() -> Iterator[Any]:
    url = os.environ.get(
        "DEPCACHE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
    except sqlalchemy.exc.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {url}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {url}")
    yield engine
    engine.dispose()


def test_sqlalchemy_commit_sends_and_rollback_discards(
    rabbitmq_broker: str,
    names: Names,
    prefix: str,
    two_managers: Managers,
    pg_engine: Any,
    observer: Callable[[], int],
) -> None:
    """The whole flow on PostgreSQL: a cached read, an update in a transaction that emits, the
    event held until the commit, then the worker invalidating Redis and the next read fresh."""
    table = f"users_{names.uid}"
    with pg_engine.begin() as conn:
        conn.execute(text(f"create table {table} (id int primary key, name text)"))
        conn.execute(text(f"insert into {table} values (1, 'Ada')"))
    Session = sessionmaker(pg_engine)
    depcache_celery.sqlalchemy.track(Session)
    cache = two_managers[0]
    app = make_app(rabbitmq_broker, names)
    install(app, router=_router())
    calls = 0

    @depcache.cache_with_deps(cache_manager=cache)
    def user_name(user_id: int) -> str:
        nonlocal calls
        calls += 1
        depcache.add_dependency(f"user:{user_id}")
        with Session() as session:
            return str(
                session.execute(
                    text(f"select name from {table} where id = :i"), {"i": user_id}
                ).scalar_one()
            )

    try:
        with embedded_worker(app):
            assert user_name(1) == "Ada"
            with Session.begin() as session:
                session.execute(text(f"update {table} set name = 'Grace' where id = 1"))
                depcache_celery.emit("user.updated", {"id": 1}, app=app)
                assert observer() == 0  # not before the commit
                assert user_name(1) == "Ada"  # still cached, and the row not committed
            wait_for(lambda: observer() == 1, what="the event after the commit")
            wait_for(lambda: user_name(1) == "Grace", what="the worker's invalidation")
            assert calls == 2

            def failing_update() -> None:
                with Session.begin() as session:
                    session.execute(text(f"update {table} set name = 'Linus' where id = 1"))
                    depcache_celery.emit("user.updated", {"id": 1}, app=app)
                    raise RuntimeError("roll back")

            with pytest.raises(RuntimeError):
                failing_update()
            session = Session()
            session.begin()
            depcache_celery.invalidate_later("user:1", app=app)
            session.rollback()
            session.close()
            time.sleep(0.5)
            assert observer() == 1  # the rolled-back transactions sent nothing
            assert user_name(1) == "Grace"
            assert calls == 2
            # outside any transaction: at once
            depcache_celery.emit("user.updated", {"id": 1}, app=app)
            assert observer() == 2
    finally:
        depcache_celery.sqlalchemy.untrack(Session)
        with pg_engine.begin() as conn:
            conn.execute(text(f"drop table {table}"))


def test_django_on_commit_in_a_real_django_process(
    rabbitmq_broker: str, names: Names, observer: Callable[[], int]
) -> None:
    env = {
        **os.environ,
        "TEST_BROKER_URL": rabbitmq_broker,
        "DEPCACHE_EXCHANGE": names.exchange,
        "TEST_TABLE": f"django_{names.uid}",
    }
    result = subprocess.run(
        [sys.executable, str(SUPPORT / "django_emit.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"inside_atomic": 0, "after_commit": 1, "after_rollback": 1, "outside": 2}
    assert observer() == 2


# -- @invalidates ---------------------------------------------------------------------------------
def test_invalidates_on_a_celery_task_goes_through_the_worker(
    broker_url: str, names: Names, two_managers: Managers
) -> None:
    app = make_app(broker_url, names)
    install(app)
    store: dict[int, str] = {}

    @app.task(name=f"{names.uid}.rename")
    @depcache_celery.invalidates("user:{user_id}", "posts:user:{user_id}", app=app)
    def rename(user_id: int, name: str) -> str:
        store[user_id] = name
        return name

    for manager in two_managers:
        fill(manager, {"u": {"user:9"}, "p": {"posts:user:9"}, "other": {"user:10"}})
    with embedded_worker(app):
        rename.delay(9, "Ada")
        wait_for(lambda: _gone(two_managers, "u", "p"), what="the job's invalidation")
    assert store == {9: "Ada"}
    assert all(m.exists("other") for m in two_managers)


def test_invalidates_locally_only_after_success(two_managers: Managers) -> None:
    a, b = two_managers

    @depcache_celery.invalidates("user:{user.id}", via="local", managers=[a.name])
    def save(user: Any, fail: bool = False) -> None:
        if fail:
            raise ValueError("not saved")

    class User:
        id = 11

    fill(a, {"k": {"user:11"}})
    fill(b, {"k": {"user:11"}})
    with pytest.raises(ValueError, match="not saved"):
        save(User(), fail=True)
    assert a.exists("k")
    save(User())
    assert not a.exists("k")
    assert b.exists("k")


async def test_invalidates_on_an_async_function(two_managers: Managers) -> None:
    @depcache_celery.invalidates("user:{user_id}", via="local")
    async def save(user_id: int) -> int:
        await asyncio.sleep(0)
        return user_id

    for manager in two_managers:
        fill(manager, {"k": {"user:12"}})
    assert await save(12) == 12
    assert _gone(two_managers, "k")


def test_invalidates_in_a_deferred_block_waits(two_managers: Managers) -> None:
    @depcache_celery.invalidates("user:{user_id}", via="local")
    def save(user_id: int) -> None:
        pass

    fill(two_managers[0], {"k": {"user:13"}})
    with depcache_celery.deferred():
        save(13)
        assert two_managers[0].exists("k")
    assert not two_managers[0].exists("k")


# -- forwarding a manager's invalidations ---------------------------------------------------------
def test_forwarded_invalidations_reach_the_worker_without_loops(
    rabbitmq_broker: str, names: Names, two_managers: Managers
) -> None:
    """Both managers forward, and the embedded worker shares their process: one local
    invalidation sends exactly one task, whose fan-out is not forwarded again."""
    app = make_app(rabbitmq_broker, names)
    install(app)
    a, b = two_managers
    sent: list[str] = []
    lock = threading.Lock()

    def count(sender: str | None = None, **_: Any) -> None:
        if sender == depcache_celery.INVALIDATE_TASK:
            with lock:
                sent.append(sender)

    before_task_publish.connect(count, weak=False)
    stops = [depcache_celery.forward_invalidations(m, app=app) for m in two_managers]
    try:
        with pytest.raises(ValueError, match="already forwarded"):
            depcache_celery.forward_invalidations(a, app=app)
        fill(b, {"k": {"shared"}})
        fill(a, {"k": {"shared"}})
        with embedded_worker(app):
            assert a.invalidate_dependency("shared") == 1  # local, at once
            wait_for(lambda: not b.exists("k"), what="the forwarded invalidation")
            time.sleep(1.0)  # room for a loop to show itself
        assert sent == [depcache_celery.INVALIDATE_TASK]
    finally:
        before_task_publish.disconnect(count)
        for stop in stops:
            stop()
    fill(b, {"k2": {"later"}})
    a.invalidate_dependency("later")
    assert sent == [depcache_celery.INVALIDATE_TASK]  # stopped: nothing more sent


# -- the CLI --------------------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "depcache.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_emit_round_trips_an_event(
    rabbitmq_broker: str, names: Names, two_managers: Managers
) -> None:
    app = make_app(rabbitmq_broker, names)
    install(app, router=_router())
    for manager in two_managers:
        fill(manager, {"u": {"user:21"}, "x": {"extra:21"}})
    with embedded_worker(app):
        result = _cli(
            "emit",
            "user.updated",
            '{"id": 21}',
            "--dependency",
            "extra:21",
            "--broker",
            rabbitmq_broker,
            "--exchange",
            names.exchange,
        )
        assert result.returncode == 0, result.stderr
        assert f"to exchange '{names.exchange}'" in result.stdout
        assert "guest:guest" not in result.stdout
        wait_for(lambda: _gone(two_managers, "u", "x"), what="the CLI's event")
    bad = _cli("emit", "user.updated", "[1]", "--broker", rabbitmq_broker)
    assert bad.returncode == 2
    assert "JSON object" in bad.stderr
    down = _cli("emit", "user.updated", "--broker", "amqp://guest:s3cret@127.0.0.1:1//")
    assert down.returncode == 1
    assert "127.0.0.1:1" in down.stderr
    assert "s3cret" not in down.stderr


def test_cli_dead_letters_list_replay_purge(
    rabbitmq_broker: str, names: Names, two_managers: Managers
) -> None:
    broken = threading.Event()
    broken.set()
    router = Router()

    @router.on_event("user.updated")
    def deps(data: dict[str, Any]) -> list[str]:
        if broken.is_set():
            raise depcache_celery.EventError("the handler is broken today")
        return [f"user:{data['id']}"]

    app = make_app(rabbitmq_broker, names)
    install(app, router=router)
    common = ("--broker", rabbitmq_broker, "--queue", names.dead)
    for manager in two_managers:
        fill(manager, {"u": {"user:31"}})
    with embedded_worker(app):
        for n in (31, 32):
            depcache_celery.emit("user.updated", {"id": n}, app=app)
        depcache_celery.emit("user.updated", {"id": 33}, app=app, id="doomed")

        def listed() -> str:
            return _cli("dead-letters", "list", *common).stdout

        wait_for(lambda: "3 dead letter(s) shown" in listed(), what="three dead letters")
        shown = _cli("dead-letters", "list", "--json", *common)
        letters = [json.loads(line) for line in shown.stdout.splitlines()]
        assert [letter["kind"] for letter in letters] == ["malformed"] * 3
        assert all("the handler is broken today" in letter["reason"] for letter in letters)
        assert "3 dead letter(s) shown" in listed()  # listing kept them

        broken.clear()  # the operator fixed the handler
        replay = _cli("dead-letters", "replay", "--limit", "2", *common)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "2 replayed, 0 kept" in replay.stdout
        wait_for(lambda: _gone(two_managers, "u"), what="the replayed event")
        assert "1 dead letter(s) shown" in listed()
        purge = _cli("dead-letters", "purge", *common)
        assert "1 dead letter(s) purged" in purge.stdout
        assert "0 dead letter(s) shown" in listed()


def test_publisher_confirms_surface_a_refused_message(rabbitmq_broker: str, names: Names) -> None:
    """A queue that rejects publishes when full makes RabbitMQ nack the message: with publisher
    confirms emit() raises instead of losing it silently."""
    app = make_app(rabbitmq_broker, names)
    exchange = Exchange(names.exchange, type="topic", durable=True, auto_delete=False)
    full = Queue(
        f"{names.queue}.full",
        exchange,
        routing_key="#",
        durable=True,
        queue_arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
    )
    with Connection(rabbitmq_broker) as conn:
        full(conn.default_channel).declare()
    try:
        depcache_celery.emit("user.updated", {"id": 1}, app=app)  # fills the queue
        with pytest.raises(depcache_celery.EmitError, match="nacked"):
            depcache_celery.emit("user.updated", {"id": 2}, app=app)
    finally:
        with Connection(rabbitmq_broker) as conn:
            conn.default_channel.queue_delete(full.name)


def test_emit_retries_when_the_connection_was_lost(
    rabbitmq_broker: str, names: Names, observer: Callable[[], int]
) -> None:
    """The broker connection dies between two emits (and stays refused for a moment): the next
    emit reconnects and delivers, nothing is lost."""
    upstream = urlsplit(rabbitmq_broker)
    with TcpProxy((upstream.hostname or "127.0.0.1", upstream.port or 5672)) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}//"
        app = make_app(url, names)
        depcache_celery.emit("user.updated", {"id": 1}, app=app)
        proxy.cut()
        depcache_celery.emit("user.updated", {"id": 2}, app=app)
        proxy.cut(refuse_for=1.5)
        depcache_celery.emit("user.updated", {"id": 3}, app=app)
        assert proxy.accepted >= 3  # a new connection after each cut
    assert observer() == 3
