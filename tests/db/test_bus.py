"""Committed writes on the bus: another process's write reaches this process's managers only
through RabbitMQ and the depcache worker (publish_database_writes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("celery")

from kombu import Connection, Exchange, Queue
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

import depcache.db.sqlalchemy as dsa
from depcache import RedisConfig, cache_with_deps, get_or_create_cache_manager
from depcache_celery import install
from tests.db.models import pk_get, seed
from tests.support.celery_fixtures import Names, embedded_worker, make_app, wait_for

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import sys
from celery import Celery
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
import depcache.db.sqlalchemy as dsa, depcache_celery
from tests.db.models import User
url, schema, broker, exchange = sys.argv[1:]
app = Celery("writer", broker=broker)
app.conf.depcache_exchange = exchange
depcache_celery.publish_database_writes(app)
engine = create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
dsa.instrument(engine)
with Session(engine) as s, s.begin():
    s.get(User, 1).name = "over the bus"
"""


@pytest.fixture
def engine(pg_dsn: str, pg_schema: str) -> Iterator[Engine]:
    url = pg_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url, connect_args={"options": f"-csearch_path={pg_schema}"})
    seed(engine)
    dsa.instrument(engine)
    yield engine
    engine.dispose()


def test_a_write_in_another_process_reaches_this_process_through_the_bus(
    engine: Engine,
    pg_schema: str,
    rabbitmq_broker: str,
    names: Names,
    redis_url: str,
    prefix: str,
) -> None:
    get_or_create_cache_manager(prefix, config=RedisConfig(url=redis_url, prefix=prefix))
    app = make_app(rabbitmq_broker, names)
    install(app)
    exchange = Exchange(names.exchange, type="topic", durable=True, auto_delete=False)
    observer = f"{names.queue}.observer"
    with Connection(rabbitmq_broker) as conn:
        Queue(observer, exchange, routing_key="db.#", durable=True)(conn.default_channel).declare()

    @cache_with_deps(name=prefix)
    def user(uid: int) -> object:
        return pk_get(engine, uid)

    assert user(1) == ["ada", 1]
    with embedded_worker(app):
        url = engine.url.render_as_string(hide_password=False)
        done = subprocess.run(
            [sys.executable, "-c", WRITER, url, pg_schema, rabbitmq_broker, names.exchange],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        # the writer has no manager: only the worker, fed by the bus, can invalidate here
        wait_for(lambda: user(1) == ["over the bus", 1], what="the invalidation from the bus")
    with Connection(rabbitmq_broker) as conn:
        message = Queue(observer, durable=True)(conn.default_channel).get(no_ack=True)
        assert message is not None
        body = json.loads(message.body)
        conn.default_channel.queue_delete(observer)
    assert body["event"] == "db.committed"
    assert body["data"]["tables"] == [f"{pg_schema}.users"]
    assert f"db:{pg_schema}.users:id=1" in body["dependencies"]
    assert "password" not in json.dumps(body)
