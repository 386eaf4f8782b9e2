"""``depcache_celery.testing.capture_emits``: what an app emits, recorded without a broker, when
it would be sent (after the commit, never after a rollback). The app's broker is a closed port:
anything really sent would fail."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy
from celery import Celery
from sqlalchemy.orm import sessionmaker

import depcache_celery
import depcache_celery.sqlalchemy
from depcache_celery import EmitError, Router
from depcache_celery.testing import EmittedEvent, EmittedInvalidation, capture_emits
from tests.support.celery_fixtures import Managers, fill

CLOSED = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens: a real send raises


@pytest.fixture
def app() -> Celery:
    app = Celery("capture-test", broker=CLOSED, set_as_current=False)
    app.conf.broker_connection_timeout = 0.5
    return app


def _fail_fast() -> dict[str, int]:
    return {"max_retries": 0}


def test_emit_and_invalidate_later_are_recorded_not_sent(app: Celery) -> None:
    with capture_emits() as emitted:
        event_id = depcache_celery.emit(
            "user.updated", {"id": 7}, dependencies=["user:7:posts"], app=app
        )
        task_id = depcache_celery.invalidate_later("user:7", "users", managers=["a"], app=app)
    assert emitted.all == [
        EmittedEvent("user.updated", {"id": 7}, event_id, ["user:7:posts"]),
        EmittedInvalidation(["user:7", "users"], ["a"], task_id),
    ]
    assert emitted.event_names == ["user.updated"]
    assert emitted.events[0].data == {"id": 7}
    assert emitted.invalidations[0].dependencies == ["user:7", "users"]
    assert len(emitted) == 2
    # after the block, sends go to the broker again (a closed port here)
    with pytest.raises(EmitError, match="could not publish"):
        depcache_celery.emit("user.updated", {"id": 7}, app=app, retry_policy=_fail_fast())
    assert len(emitted) == 2


def test_bad_input_still_raises_and_records_nothing(app: Celery) -> None:
    with capture_emits() as emitted:
        with pytest.raises(ValueError, match="not JSON"):
            depcache_celery.emit("user.updated", {"at": float("nan")}, app=app)
        with pytest.raises(ValueError, match="at least one"):
            depcache_celery.invalidate_later(app=app)
    assert emitted.all == []


def test_a_deferred_block_records_at_its_end_and_nothing_when_it_fails(app: Celery) -> None:
    with capture_emits() as emitted:
        with depcache_celery.deferred():
            depcache_celery.emit("user.updated", {"id": 1}, app=app)
            depcache_celery.invalidate_later("user:1", app=app)
            assert emitted.all == []  # not committed yet
        assert emitted.event_names == ["user.updated"]
        assert len(emitted.invalidations) == 1
        emitted.clear()

        def fails() -> None:
            with depcache_celery.deferred():
                depcache_celery.emit("user.updated", {"id": 2}, app=app)
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError, match="rolled back"):
            fails()
    assert emitted.all == []


def test_a_sqlalchemy_session_records_on_commit_only(app: Celery, tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("create table users (id int primary key, name text)"))
    Session = sessionmaker(engine)
    depcache_celery.sqlalchemy.track(Session)
    try:
        with capture_emits() as emitted:
            with Session.begin() as session:
                session.execute(sqlalchemy.text("insert into users values (1, 'Ada')"))
                depcache_celery.emit("user.created", {"id": 1}, app=app)
                assert emitted.all == []  # the transaction is open
            assert emitted.event_names == ["user.created"]

            def rolls_back() -> None:
                with Session.begin() as session:
                    session.execute(sqlalchemy.text("insert into users values (2, 'Bo')"))
                    depcache_celery.emit("user.created", {"id": 2}, app=app)
                    raise RuntimeError("rolled back")

            with pytest.raises(RuntimeError, match="rolled back"):
                rolls_back()
        assert emitted.event_names == ["user.created"]
    finally:
        depcache_celery.sqlalchemy.untrack(Session)
        engine.dispose()


async def test_aemit_and_async_invalidates_are_recorded_from_their_threads(app: Celery) -> None:
    @depcache_celery.invalidates("user:{user_id}", app=app)
    async def save(user_id: int) -> int:
        return user_id

    with capture_emits() as emitted:
        event_id = await depcache_celery.aemit("user.updated", {"id": 3}, app=app)
        assert await save(3) == 3
    assert emitted.all[0] == EmittedEvent("user.updated", {"id": 3}, event_id)
    assert emitted.invalidations[0].dependencies == ["user:3"]
    assert emitted.invalidations[0].managers is None


def test_sends_from_other_threads_and_nested_captures_are_recorded(app: Celery) -> None:
    with capture_emits() as outer:
        with capture_emits() as inner:
            thread = threading.Thread(
                target=depcache_celery.emit, args=("a.b", {"n": 1}), kwargs={"app": app}
            )
            thread.start()
            thread.join()
        depcache_celery.emit("c.d", {"n": 2}, app=app)
    assert inner.event_names == ["a.b"]
    assert outer.event_names == ["a.b", "c.d"]


def test_invalidated_is_what_the_worker_would_invalidate(app: Celery) -> None:
    router = Router()
    router.on_event("user.updated", deps=["user:{id}", "users"])
    with capture_emits() as emitted:
        depcache_celery.emit("user.updated", {"id": 4}, dependencies=["team:1"], app=app)
        depcache_celery.invalidate_later("users", "post:9", app=app)
        depcache_celery.emit("nobody.listens", {}, app=app)
    assert emitted.invalidated(router) == ["user:4", "users", "team:1", "post:9"]
    assert emitted.invalidated(Router()) == ["team:1", "users", "post:9"]
    with capture_emits() as bad:
        depcache_celery.emit("user.updated", {"name": "no id"}, app=app)
    with pytest.raises(depcache_celery.EventError):
        bad.invalidated(router)


@pytest.mark.redis
def test_forwarded_invalidations_are_recorded(app: Celery, two_managers: Managers) -> None:
    a, _ = two_managers
    stop = depcache_celery.forward_invalidations(a, app=app)
    try:
        fill(a, {"k": {"shared"}})
        with capture_emits() as emitted:
            assert a.invalidate_dependency("shared") == 1  # local, at once
        assert emitted.all == [
            EmittedInvalidation(["shared"], None, emitted.invalidations[0].task_id)
        ]
    finally:
        stop()
