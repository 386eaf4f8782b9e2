"""``depcache check``, the canary, against a real ``celery -A depcache_celery.worker worker``
subprocess on RabbitMQ with managers on two Redis deployments, configured as the worker is
(``CELERY_BROKER_URL``, ``DEPCACHE_SETUP``, ``DEPCACHE_EXCHANGE``): exit 0 with a latency per
manager while the worker runs, non-zero naming the missed managers once it is stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kombu import Connection

from depcache_celery import Settings, event_queue
from tests.support.celery_fixtures import Names, start_worker_process, stop_process
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]

SETUP = """
import os
import depcache

for name, url in (("a", os.environ["TEST_REDIS_A"]), ("b", os.environ["TEST_REDIS_B"])):
    depcache.get_or_create_cache_manager(
        os.environ["TEST_PREFIX"] + name,
        config=depcache.RedisConfig(url=url, prefix=os.environ["TEST_PREFIX"] + name),
    )
"""


def test_check_passes_with_a_running_worker_and_fails_once_it_stopped(
    tmp_path: Path,
    rabbitmq_broker: str,
    names: Names,
    redis_url: str,
    standalone_servers: list[RedisServer],
    prefix: str,
) -> None:
    setup = f"canary_setup_{names.uid}"
    (tmp_path / f"{setup}.py").write_text(textwrap.dedent(SETUP))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DEPCACHE_", "CELERY_"))},
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "CELERY_BROKER_URL": rabbitmq_broker,
        "DEPCACHE_SETUP": setup,
        "DEPCACHE_EXCHANGE": names.exchange,
        "DEPCACHE_QUEUE": names.queue,
        "DEPCACHE_DEAD_LETTER_QUEUE": names.dead,
        "TEST_PREFIX": prefix,
        "TEST_REDIS_A": redis_url,
        "TEST_REDIS_B": standalone_servers[0].url,
    }
    with Connection(rabbitmq_broker) as conn:  # the worker's queue, before the worker is up
        event_queue(Settings(exchange=names.exchange, queue=names.queue))(
            conn.default_channel
        ).declare()

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "depcache.cli", "check", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
            check=False,
        )

    worker = start_worker_process(
        tmp_path,
        "depcache_celery.worker",
        env,
        "worker.log",
        *("--pool", "solo", "--hostname", f"canary-{names.uid}@%h"),
    )
    try:
        # the worker is up once a probe goes through (its first start takes a few seconds)
        deadline = time.monotonic() + 60
        while True:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            result = check("--json", "--timeout", "5")
            if result.returncode == 0 or time.monotonic() > deadline:
                break
        assert result.returncode == 0, result.stdout + result.stderr
        outcome = json.loads(result.stdout)
        assert outcome["ok"] is True
        assert set(outcome["targets"]) == {f"{prefix}a", f"{prefix}b"}
        for target in outcome["targets"].values():
            assert 0 < target["latency_ms"] < 5000
            assert target["error"] is None

        text = check()  # the default timeout, human output
        assert text.returncode == 0, text.stdout + text.stderr
        assert "every manager reached" in text.stdout
        for name in (f"{prefix}a", f"{prefix}b"):
            [line] = [x for x in text.stdout.splitlines() if x.startswith(name + " ")]
            assert " ok " in line
            assert " ms " in line
    finally:
        stop_process(worker)

    started = time.monotonic()
    missed = check("--timeout", "2")
    assert time.monotonic() - started < 30  # bounded by the timeout, not hanging
    assert missed.returncode == 1, missed.stdout + missed.stderr
    assert f"missed on {prefix}a, {prefix}b" in missed.stdout
    assert "still there after 2 s" in missed.stdout
    assert "Traceback" not in missed.stderr


def test_check_without_setup_modules_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPCACHE_", "CELERY_"))}
    result = subprocess.run(
        [sys.executable, "-m", "depcache.cli", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert "DEPCACHE_SETUP" in result.stderr
