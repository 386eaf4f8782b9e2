"""Defaults and traps that used to lose events or mislead an operator silently (issue 15): each
test here failed before the fix. Real RabbitMQ, Redis and worker processes throughout."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import amqp
import pytest
import redis
from kombu import Connection

import depcache
import depcache_celery
from depcache_celery import Settings, event_queue, install
from depcache_celery.settings import DEFAULT_BROKER_URL
from tests.support.celery_fixtures import (
    Names,
    embedded_worker,
    fill,
    make_app,
    read_queue,
    wait_for,
)
from tests.support.servers import free_port, redis_server

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )


def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return _run("-m", "depcache.cli", *args, env=env)


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPCACHE_", "CELERY_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env.update(values)
    return env


# --- the broker: one default, and no silent memory:// worker --------------------------------------


def test_the_standalone_worker_refuses_a_memory_broker(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "depcache_celery.worker", "worker"],
            env=_env(CELERY_BROKER_URL="memory://"),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        code = process.wait(timeout=60)  # before the fix: "Connected to memory://", runs on
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert code != 0, text
    assert "CELERY_BROKER_URL" in text
    assert "memory://" in text
    assert "Traceback" not in text


def test_one_default_broker_for_the_worker_emit_and_the_cli() -> None:
    probe = (
        "import json, celery, depcache_celery.worker as w, depcache_celery.cli as c;"
        "print(json.dumps([w.app.conf.broker_url, c.DEFAULT_BROKER,"
        " celery.Celery(set_as_current=False).connection_for_write().as_uri(True)]))"
    )
    result = _run("-c", probe, env=_env())
    assert result.returncode == 0, result.stderr
    worker, cli, emit_default = json.loads(result.stdout)
    assert worker == cli == DEFAULT_BROKER_URL
    # emit() on an app without a broker uses Celery's default: the same server and vhost
    assert emit_default == DEFAULT_BROKER_URL


def test_a_memory_broker_is_allowed_when_asked_for_in_process() -> None:
    from depcache_celery.worker import RefuseMemoryBroker, make_app  # noqa: PLC0415

    assert RefuseMemoryBroker not in make_app(allow_memory_broker=True).steps["worker"]
    assert RefuseMemoryBroker in make_app().steps["worker"]


# --- dead letters: reading never creates a queue --------------------------------------------------


def test_dead_letters_list_on_a_missing_queue_fails_and_creates_nothing(
    rabbitmq_broker: str, names: Names
) -> None:
    missing = f"{names.dead}.does.not.exist"
    for action in ("list", "purge", "replay"):
        result = _cli(
            "dead-letters", action, "--broker", rabbitmq_broker, "--queue", missing, env=_env()
        )
        assert result.returncode == 2, (action, result.stdout, result.stderr)
        assert f"no queue '{missing}'" in result.stderr
        assert "Traceback" not in result.stderr
    with Connection(rabbitmq_broker) as conn, pytest.raises(amqp.exceptions.NotFound):
        conn.default_channel.queue_declare(missing, passive=True)


# --- bad task arguments and expired retries are dead letters, not "succeeded" ---------------------


@pytest.mark.redis
def test_bad_task_arguments_are_dead_lettered_with_a_reason(
    rabbitmq_broker: str, names: Names, redis_manager: depcache.CacheManager
) -> None:
    app = make_app(rabbitmq_broker, names)
    install(app)
    fill(redis_manager, {"u1": {"user:1"}})
    with embedded_worker(app):
        app.send_task("depcache.invalidate", args=["user:1"])  # a string, not a list
        app.send_task("depcache.event", args=[])  # no event name
        app.send_task("depcache.event", args=["user.updated", [1]])  # data not an object
        letters = read_queue(rabbitmq_broker, names.dead, 3, timeout=30)
        app.send_task("depcache.invalidate", args=[["user:1"]])  # the worker goes on
        wait_for(lambda: not redis_manager.exists("u1"), what="the next task")
    bodies = sorted((json.loads(letter.body) for letter in letters), key=lambda b: b["reason"])
    assert [b["kind"] for b in bodies] == ["malformed"] * 3
    reasons = [b["reason"] for b in bodies]
    assert "depcache.event: bad arguments: data must be an object" in reasons[0]
    assert "depcache.event: bad arguments: missing a required argument: 'event'" in reasons[1]
    assert "depcache.invalidate: bad arguments: dependencies must be a list" in reasons[2]
    assert bodies[2]["args"] == ["user:1"]
    assert depcache_celery.stats.snapshot()["dead_letters"] == {"malformed": 3}


@pytest.mark.redis
def test_an_expired_retry_is_not_logged_as_succeeded(
    rabbitmq_broker: str, names: Names, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    gone = f"{prefix}gone"
    depcache.get_or_create_cache_manager(
        gone, config=depcache.RedisConfig(url=f"redis://127.0.0.1:{free_port()}/0", prefix=gone)
    )
    app = make_app(
        rabbitmq_broker, names, depcache_retry_backoff_max=0.1, depcache_retry_max_age=0.3
    )
    install(app)
    caplog.set_level(logging.INFO, logger="celery.app.trace")
    with embedded_worker(app):
        result = app.send_task("depcache.invalidate", args=[["user:1"]])
        [letter] = read_queue(rabbitmq_broker, names.dead, 1, timeout=30)
        wait_for(
            lambda: any("raised expected" in r.getMessage() for r in caplog.records),
            what="Celery's log of the task",
        )
    assert json.loads(letter.body)["kind"] == "expired"
    lines = [r.getMessage() for r in caplog.records if result.id in r.getMessage()]
    assert any("raised expected: DeadLettered(" in line for line in lines), lines
    assert not any("succeeded" in line for line in lines), lines


# --- managers: a second config, or a name nobody registered, is said out loud ---------------------


def test_registering_a_name_again_with_another_config_warns_naming_both(prefix: str) -> None:
    first = depcache.RedisConfig(url="redis://app:s3cr3t-one@127.0.0.1:6379/0", prefix=prefix)
    other = depcache.RedisConfig(url="redis://app:s3cr3t-two@10.0.0.9:6379/1", prefix=prefix)
    manager = depcache.get_or_create_cache_manager(prefix, config=first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same config again is fine
        same = depcache.RedisConfig(url="redis://app:s3cr3t-one@127.0.0.1:6379/0", prefix=prefix)
        assert depcache.get_or_create_cache_manager(prefix, config=same) is manager
        assert depcache.get_or_create_cache_manager(prefix) is manager
    with pytest.warns(depcache.ConfigWarning) as caught:
        assert depcache.get_or_create_cache_manager(prefix, config=other) is manager
    message = str(caught[0].message)
    assert "127.0.0.1:6379/0" in message
    assert "10.0.0.9:6379/1" in message
    assert "s3cr3t" not in message
    assert caught[0].filename == __file__  # points at the caller


def test_a_decorator_naming_an_unregistered_manager_warns(prefix: str) -> None:
    depcache.get_or_create_cache_manager(
        prefix, config=depcache.ConfigBase(prefix=prefix, backend="memory")
    )

    @depcache.cache_with_deps(name=f"{prefix}-tpyo")
    def typo() -> int:
        return 1

    @depcache.cache_with_deps(name=prefix)
    def right() -> int:
        return 2

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert right() == 2
    with pytest.warns(depcache.ConfigWarning, match=f"'{prefix}-tpyo'.*registered: {prefix}"):
        typo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: it is registered now
        typo()


# --- the depcache command -------------------------------------------------------------------------

SETUP = """
import os
import depcache

for name in ("a", "b"):
    depcache.get_or_create_cache_manager(
        os.environ["TEST_PREFIX"] + name,
        config=depcache.RedisConfig(url=os.environ["TEST_REDIS_URL"],
                                    prefix=os.environ["TEST_PREFIX"] + name),
    )
"""


@pytest.mark.redis
def test_cli_invalidate_runs_on_the_managers_of_the_setup_modules(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    (tmp_path / f"setup_{prefix}.py").write_text(SETUP)
    managers = [
        depcache.get_or_create_cache_manager(
            f"{prefix}{n}", config=depcache.RedisConfig(url=redis_url, prefix=f"{prefix}{n}")
        )
        for n in ("a", "b")
    ]
    for manager in managers:
        fill(manager, {"u1": {"user:1"}, "u2": {"user:2"}})
    env = _env(TEST_PREFIX=prefix, TEST_REDIS_URL=redis_url, DEPCACHE_SETUP=f"setup_{prefix}")
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    result = _cli("invalidate", "user:1", env=env)
    assert result.returncode == 0, result.stderr
    for manager in managers:
        assert f"1 entries removed from manager '{manager.name}'" in result.stdout
        assert not manager.exists("u1")
        assert manager.exists("u2")


@pytest.mark.redis
def test_cli_invalidate_says_when_no_manager_uses_the_prefix(prefix: str) -> None:
    with redis_server() as server:  # its own: the listing is of every prefix on the server
        _invalidate_says_when_no_manager_uses_the_prefix(server.url, prefix)


def _invalidate_says_when_no_manager_uses_the_prefix(redis_url: str, prefix: str) -> None:
    manager = depcache.get_or_create_cache_manager(
        prefix, config=depcache.RedisConfig(url=redis_url, prefix=prefix)
    )
    manager.invalidate_dependency("seen")  # a prefix in use, to be listed
    manager.close()
    result = _cli("invalidate", "user:1", "--url", redis_url, "--prefix", f"{prefix}x")
    assert result.returncode == 0, result.stderr
    assert "0 entries removed" in result.stdout
    assert f"prefix '{prefix}x'" in result.stderr
    assert "no cache manager seems to use it" in result.stderr
    assert f"'{prefix}'" in result.stderr  # the prefixes that are in use
    again = _cli("invalidate", "user:1", "--url", redis_url, "--prefix", prefix)
    assert again.returncode == 0
    assert again.stderr == ""


def test_cli_refuses_a_url_whose_path_is_not_a_database() -> None:
    result = _cli("invalidate", "x", "--url", "redis://127.0.0.1:6379/abc")
    assert result.returncode == 2
    assert "database number" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.redis
def test_cli_stats_names_its_prefix_and_shows_progress(
    redis_client: redis.Redis, redis_url: str, prefix: str
) -> None:
    pipe = redis_client.pipeline(transaction=False)
    for n in range(2500):
        pipe.set(f"{prefix}:k:m.f:{n}", b"x")
    pipe.execute()
    result = _cli("stats", "--url", redis_url, "--prefix", prefix, "--json", "--progress", "1000")
    assert result.returncode == 0, result.stderr
    assert f"reading prefix '{prefix}' (--prefix)" in result.stderr
    assert "... 2,000 keys" in result.stderr
    numbers = json.loads(result.stdout)
    assert numbers["entries"] == 2500
    assert numbers["memory_bytes"] > 2500


def test_cli_and_producer_name_a_bad_broker_or_bad_json_without_a_traceback() -> None:
    for args in (
        ("emit", "user.updated", "{}", "--broker", "foo://x"),
        ("dead-letters", "list", "--broker", "foo://x"),
    ):
        result = _cli(*args, env=_env())
        assert result.returncode == 2, (args, result.stderr)
        assert "foo://x" in result.stderr
        assert "Traceback" not in result.stderr
    producer = _run("examples/producer.py", "user.updated", "{id: 1}", env=_env())
    assert producer.returncode == 2
    assert "data is not JSON" in producer.stderr
    assert "Traceback" not in producer.stderr


# --- the bus: dependencies need no data; queues can expire or be bounded --------------------------


def test_a_bus_message_with_dependencies_needs_no_data() -> None:
    message = depcache_celery.parse_message(b'{"event": "x", "dependencies": ["user:1"]}')
    assert message.data == {}
    assert message.dependencies == ["user:1"]
    with pytest.raises(depcache_celery.BadMessage, match="missing field 'data'"):
        depcache_celery.parse_message(b'{"event": "x"}')


def test_queue_expiry_and_length_settings_default_to_losing_nothing() -> None:
    assert Settings().queue_arguments() == {}
    settings = Settings.from_conf(
        {}, {"DEPCACHE_QUEUE_EXPIRES": "86400", "DEPCACHE_QUEUE_MAX_LENGTH": "100000"}
    )
    assert settings.queue_arguments() == {
        "x-expires": 86_400_000,
        "x-max-length": 100_000,
        "x-overflow": "reject-publish",
    }
    with pytest.raises(depcache.ConfigError, match="depcache_queue_overflow"):
        Settings.from_conf({"depcache_queue_overflow": "drop-everything"})


def test_the_queue_settings_reach_rabbitmq(rabbitmq_broker: str, names: Names) -> None:
    bounded = Settings(exchange=names.exchange, queue=names.queue, queue_max_length=1)
    expiring = Settings(exchange=names.exchange, queue=f"{names.queue}.exp", queue_expires=0.3)
    app = make_app(rabbitmq_broker, names)
    try:
        with Connection(rabbitmq_broker) as conn:
            event_queue(bounded)(conn.default_channel).declare()
            event_queue(expiring)(conn.default_channel).declare()
        depcache_celery.emit("user.updated", {"id": 1}, app=app)
        with pytest.raises(depcache_celery.EmitError, match="nacked"):  # refused, not dropped
            depcache_celery.emit("user.updated", {"id": 2}, app=app)
        deadline = time.monotonic() + 15
        while True:  # the unused queue is deleted by the broker (a passive declare renews it)
            time.sleep(1.5)
            with Connection(rabbitmq_broker) as conn:
                try:
                    conn.default_channel.queue_declare(expiring.queue, passive=True)
                except amqp.exceptions.NotFound:
                    break
            assert time.monotonic() < deadline, "the queue did not expire"
    finally:
        with Connection(rabbitmq_broker) as conn:
            conn.default_channel.queue_delete(expiring.queue)
