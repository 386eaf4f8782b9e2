"""A Django process for tests/emit/test_emit.py: emits inside atomic blocks on the machine's
PostgreSQL and reports, as a JSON line, how many events had reached the broker at each step.

Environment: TEST_BROKER_URL, DEPCACHE_EXCHANGE, TEST_TABLE, optional DEPCACHE_TEST_PG_*.
"""

from __future__ import annotations

import json
import os

import django
from django.conf import settings
from kombu import Connection, Exchange, Queue

settings.configure(
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("DEPCACHE_TEST_PG_DB", "test"),
            "USER": os.environ.get("DEPCACHE_TEST_PG_USER", "postgres"),
            "HOST": os.environ.get("DEPCACHE_TEST_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("DEPCACHE_TEST_PG_PORT", "5432"),
        }
    },
    INSTALLED_APPS=[],
    USE_TZ=True,
)
django.setup()

from django.db import connection, transaction  # noqa: E402  # after settings.configure

import depcache_celery  # noqa: E402

BROKER = os.environ["TEST_BROKER_URL"]
EXCHANGE = os.environ["DEPCACHE_EXCHANGE"]
TABLE = os.environ["TEST_TABLE"]
QUEUE = f"{TABLE}.observer"


def published() -> int:
    with Connection(BROKER) as conn:
        queue = Queue(QUEUE, durable=True)(conn.default_channel)
        return int(queue.queue_declare(passive=True).message_count)


def main() -> None:
    exchange = Exchange(EXCHANGE, type="topic", durable=True, auto_delete=False)
    with Connection(BROKER) as conn:
        Queue(QUEUE, exchange, routing_key="#", durable=True)(conn.default_channel).declare()
    seen: dict[str, int] = {}
    with connection.cursor() as cursor:
        cursor.execute(f"create table {TABLE} (id int primary key, name text)")
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"insert into {TABLE} values (1, 'Ada')")
            depcache_celery.emit("user.updated", {"id": 1}, broker_url=BROKER)
            seen["inside_atomic"] = published()
        seen["after_commit"] = published()
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(f"update {TABLE} set name = 'Grace' where id = 1")
                depcache_celery.emit("user.updated", {"id": 1}, broker_url=BROKER)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        seen["after_rollback"] = published()
        depcache_celery.emit("user.updated", {"id": 2}, broker_url=BROKER)
        seen["outside"] = published()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"drop table {TABLE}")
        with Connection(BROKER) as conn:
            conn.default_channel.queue_delete(QUEUE)
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
