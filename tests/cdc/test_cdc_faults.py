"""``depcache cdc`` under faults: SIGKILL mid-stream, the bus cut off, a slot that does not
exist yet, a Redis broker; nothing committed is ever lost."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import depcache
from depcache.db import column_dependency
from depcache_celery import install
from tests.support.cdc_fixtures import (
    CdcPipeline,
    CdcProcess,
    PgDatabase,
    start_cdc,
    wait_streaming,
)
from tests.support.celery_fixtures import Names, embedded_worker, make_app, wait_for
from tests.support.pg_server import PostgresServer
from tests.support.servers import free_port
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.redis

WRITER = textwrap.dedent(
    """
    import sys, time, psycopg
    dsn, transactions, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with psycopg.connect(dsn) as conn:
        for t in range(transactions):
            first = t * rows + 1
            conn.execute(
                "INSERT INTO items SELECT i, 'v' || i FROM generate_series(%s::int, %s::int) i",
                [first, first + rows - 1],
            )
            conn.commit()
            time.sleep(0.02)
    """
)


def item_dep(i: int) -> str:
    dep = column_dependency("items", "id", i)
    assert dep is not None
    return dep


def fill_items(pipeline: CdcPipeline, count: int) -> None:
    for manager in pipeline.managers:
        for i in range(1, count + 1):
            manager.set(f"item{i}", i, dependencies={item_dep(i)})


def cached_items(pipeline: CdcPipeline, count: int) -> list[int]:
    return [i for i in range(1, count + 1) if any(m.exists(f"item{i}") for m in pipeline.managers)]


def start_writer(dsn: str, transactions: int, rows: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WRITER, dsn, str(transactions), str(rows)])


def test_sigkill_mid_stream_loses_nothing(cdc_pipeline: CdcPipeline) -> None:
    pipeline = cdc_pipeline
    pipeline.db.execute("CREATE TABLE items (id int PRIMARY KEY, label text)")
    transactions, rows = 60, 25
    total = transactions * rows
    fill_items(pipeline, total)
    writer = start_writer(pipeline.db.dsn, transactions, rows)
    try:
        time.sleep(0.5)  # some transactions streamed, more to come
        pipeline.cdc.kill()
        time.sleep(0.5)  # more commits while no CDC runs
        pipeline.cdc.start()
        assert writer.wait(timeout=60) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
    pipeline.barrier(timeout=60)
    assert cached_items(pipeline, total) == []
    assert pipeline.cdc.output().count("streaming from") == 2  # it started again from the slot


def test_bus_cut_off_then_back_loses_nothing(
    cdc_pipeline: CdcPipeline, tmp_path: Path, rabbitmq_url: str
) -> None:
    """The CDC's broker connection is cut and refused for 4 s while rows are committed: it
    retries with backoff, the slot is not confirmed past them meanwhile, and once the broker
    answers again everything is invalidated."""
    pipeline = cdc_pipeline
    pipeline.cdc.stop()
    pipeline.db.execute("CREATE TABLE items (id int PRIMARY KEY, label text)")
    with TcpProxy(("127.0.0.1", 5672)) as proxy:
        proxied = f"amqp://guest:guest@127.0.0.1:{proxy.port}//"
        process, _ = start_cdc(
            pipeline.db, proxied, pipeline.names, tmp_path / "proxied.log", slot=pipeline.slot
        )
        pipeline.cdc = process
        try:
            wait_streaming(pipeline.db, pipeline.slot, process)
            pipeline.barrier()
            fill_items(pipeline, 200)
            proxy.cut(refuse_for=4.0)
            pipeline.db.execute("INSERT INTO items SELECT i, 'x' FROM generate_series(1, 200) i")
            with pipeline.db.connect() as conn:
                row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            assert row is not None
            time.sleep(2.0)
            # nothing went through, nothing was confirmed past the rows
            assert len(cached_items(pipeline, 200)) == 200
            with pipeline.db.connect() as conn:
                confirmed_past = conn.execute(
                    "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                    "WHERE slot_name = %s",
                    [row[0], pipeline.slot],
                ).fetchone()
            assert confirmed_past == (False,)
            pipeline.barrier(timeout=60)
            assert cached_items(pipeline, 200) == []
            output = process.output()
            assert "the bus is not taking events" in output
            assert "the bus takes events again" in output
            assert "guest:guest" not in output
        finally:
            process.stop()


def test_missing_slot_without_create_waits_and_retries(
    pg_database: PgDatabase, rabbitmq_broker: str, names: Names, tmp_path: Path
) -> None:
    """``--no-create`` and no slot: the process says so and keeps trying (never crashes);
    once an operator creates the slot and publication, it streams."""
    process, slot = start_cdc(
        pg_database, rabbitmq_broker, names, tmp_path / "c.log", "--no-create"
    )
    try:
        wait_for(lambda: "does not exist" in process.output(), what="the missing slot's message")
        assert process.running()
        with pg_database.connect() as conn:
            conn.execute(f"CREATE PUBLICATION p_{pg_database.uid} FOR ALL TABLES")  # type: ignore[arg-type]
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
        wait_streaming(pg_database, slot, process)
    finally:
        assert process.stop() == 0


def test_redis_broker_and_metrics(
    pg_database: PgDatabase,
    redis_broker_url: str,
    names: Names,
    two_managers: tuple[object, object],
    tmp_path: Path,
) -> None:
    """On a Redis broker too (a publish is confirmed by its reply); the Prometheus metrics count
    what went through."""
    pytest.importorskip("prometheus_client")
    port = free_port()
    app = make_app(redis_broker_url, names)
    install(app)
    pg_database.execute("CREATE TABLE items (id int PRIMARY KEY)")
    managers = two_managers
    for manager in managers:
        manager.set("item1", 1, dependencies={item_dep(1)})  # type: ignore[attr-defined]
    process, slot = start_cdc(
        pg_database, redis_broker_url, names, tmp_path / "c.log", "--metrics-port", str(port)
    )
    try:
        with embedded_worker(app):
            wait_streaming(pg_database, slot, process)
            pg_database.execute("INSERT INTO items VALUES (1)")
            wait_for(
                lambda: not any(m.exists("item1") for m in managers),  # type: ignore[attr-defined]
                what=f"the invalidation\n{process.output()}",
            )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        values = dict(re.findall(r"^(depcache_cdc_\w+) (\S+)$", metrics, flags=re.MULTILINE))
        assert float(values["depcache_cdc_changes_total"]) >= 1
        assert float(values["depcache_cdc_events_published_total"]) >= 1
        assert float(values["depcache_cdc_bus_up"]) == 1
    finally:
        assert process.stop() == 0


def test_an_unreachable_database_is_retried(
    rabbitmq_broker: str, names: Names, tmp_path: Path, pg_database: PgDatabase
) -> None:
    """A database that does not answer: logged (without the password), retried, never a crash."""
    port = free_port()
    db = PgDatabase(
        pg_database.server, "nope", f"postgresql://app:s3cret@127.0.0.1:{port}/nope", "x"
    )
    process, _ = start_cdc(db, rabbitmq_broker, names, tmp_path / "c.log")
    try:
        wait_for(lambda: "starting again" in process.output(), what="a retry")
        assert process.running()
    finally:
        assert process.stop() == 0
    output = process.output()
    assert "s3cret" not in output
    assert "postgresql://app@127.0.0.1" in output
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(db.dsn, connect_timeout=1)


def test_a_second_process_on_the_slot_waits_as_a_standby(
    cdc_pipeline: CdcPipeline, tmp_path: Path
) -> None:
    """PostgreSQL lets one reader stream a slot: a second ``depcache cdc`` on it retries until
    the first stops, then takes over."""
    pipeline = cdc_pipeline
    second, _ = start_cdc(
        pipeline.db, pipeline.broker_url, pipeline.names, tmp_path / "b.log", slot=pipeline.slot
    )
    try:
        wait_for(lambda: "is active for PID" in second.output(), what="the second one to wait")
        assert second.running()
        first = pipeline.cdc
        assert first.stop() == 0
        pipeline.cdc = second
        pipeline.db.execute("CREATE TABLE items (id int PRIMARY KEY)")
        fill_items(pipeline, 1)
        pipeline.db.execute("INSERT INTO items VALUES (1)")
        pipeline.barrier(timeout=60)
        assert cached_items(pipeline, 1) == []
    finally:
        second.stop()


@pytest.fixture
def sync_standby_server() -> Iterator[PostgresServer]:
    """A server whose commits wait for a synchronous standby that never connects."""
    from tests.support.pg_server import postgres_server  # noqa: PLC0415

    with postgres_server(
        wal_level="logical",
        max_replication_slots="10",
        max_wal_senders="10",
        synchronous_standby_names="nobody",
    ) as server:
        yield server


def test_events_wait_until_the_commit_is_visible(
    sync_standby_server: PostgresServer,
    rabbitmq_broker: str,
    names: Names,
    two_managers: tuple[depcache.CacheManager, depcache.CacheManager],
    tmp_path: Path,
) -> None:
    """With synchronous replication the stream has a transaction long before other sessions
    see it: the invalidation must wait, or a reader would cache the old row again after it."""
    server = sync_standby_server
    uid = uuid.uuid4().hex[:8]
    db = PgDatabase(server, "postgres", server.dsn(), uid)
    with db.connect() as conn:
        conn.execute("SET synchronous_commit = local")  # set-up does not wait for the standby
        conn.execute("CREATE TABLE items (id int PRIMARY KEY)")
        conn.execute(f"CREATE PUBLICATION p_{uid} FOR ALL TABLES")  # type: ignore[arg-type]
    app = make_app(rabbitmq_broker, names)
    install(app)
    for manager in two_managers:
        manager.set("item1", 1, dependencies={item_dep(1)})
    process, slot = start_cdc(db, rabbitmq_broker, names, tmp_path / "c.log")
    writer: subprocess.Popen[bytes] | None = None
    try:
        with embedded_worker(app):
            wait_streaming(db, slot, process)
            writer = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys, psycopg; psycopg.connect(sys.argv[1], autocommit=True)"
                    ".execute('INSERT INTO items VALUES (1)')",
                    db.dsn,
                ],
                stderr=subprocess.DEVNULL,
            )
            # the commit is in the WAL (and streamed) but waits for the standby: not visible
            time.sleep(2.0)
            with db.connect() as conn:
                assert conn.execute("SELECT count(*) FROM items").fetchone() == (0,)
            assert writer.poll() is None
            assert all(m.exists("item1") for m in two_managers)  # so nothing was invalidated
            # cancel the wait: the transaction becomes visible, and only now is it invalidated
            with db.connect() as conn:
                conn.execute(
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                    "WHERE wait_event = 'SyncRep'"
                )
            wait_for(
                lambda: not any(m.exists("item1") for m in two_managers),
                what=f"the invalidation once visible\n{process.output()}",
            )
            with db.connect() as conn:
                assert conn.execute("SELECT count(*) FROM items").fetchone() == (1,)
    finally:
        if writer is not None:
            if writer.poll() is None:
                writer.kill()
            writer.wait()
        process.stop()


@pytest.fixture
def small_wal_server() -> Iterator[PostgresServer]:
    """A server that removes a slot's WAL beyond 1 MB (``max_slot_wal_keep_size``)."""
    from tests.support.pg_server import postgres_server  # noqa: PLC0415

    with postgres_server(
        wal_level="logical",
        max_replication_slots="10",
        max_wal_senders="10",
        max_slot_wal_keep_size="1MB",
    ) as server:
        yield server


def _lose_the_slot(db: PgDatabase, slot: str) -> None:
    with db.connect() as conn:
        for i in range(4):  # a few WAL segments beyond the slot, then a checkpoint removes them
            conn.execute("INSERT INTO filler VALUES (%s)", [i])
            conn.execute("SELECT pg_switch_wal()")
        conn.execute("CHECKPOINT")
        row = conn.execute(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", [slot]
        ).fetchone()
    assert row == ("lost",)


def test_a_lost_slot_is_recreated_and_every_table_invalidated(
    small_wal_server: PostgresServer,
    rabbitmq_broker: str,
    names: Names,
    two_managers: tuple[depcache.CacheManager, depcache.CacheManager],
    tmp_path: Path,
) -> None:
    """While ``depcache cdc`` is down, the server removes the slot's WAL: the changes meanwhile
    are gone. On restart it creates the slot anew and invalidates every cached read of every
    published table; ``--on-slot-lost exit`` exits with status 3 instead."""
    server = small_wal_server
    db = PgDatabase(server, "postgres", server.dsn(), uuid.uuid4().hex[:8])
    db.execute("CREATE TABLE items (id int PRIMARY KEY)", "CREATE TABLE filler (id int)")
    app = make_app(rabbitmq_broker, names)
    install(app)
    process, slot = start_cdc(db, rabbitmq_broker, names, tmp_path / "c.log")
    with embedded_worker(app):
        wait_streaming(db, slot, process)
        assert process.stop() == 0
        entries = {"item1": {item_dep(1), "db:public.items:*"}, "all": {"db:public.items"}}
        for manager in two_managers:
            for key, deps in entries.items():
                manager.set(key, key, dependencies=deps)
        db.execute("INSERT INTO items VALUES (1)")  # never streamed: its WAL goes
        _lose_the_slot(db, slot)

        strict = CdcProcess([*process.args, "--on-slot-lost", "exit"], process.env, process.log)
        strict.start()
        assert strict.process is not None
        assert strict.process.wait(timeout=60) == 3
        assert "is lost" in strict.output()

        process.start()
        wait_for(
            lambda: not any(m.exists(k) for m in two_managers for k in entries),
            what=f"every read of the table invalidated\n{process.output()}",
        )
        wait_streaming(db, slot, process)
        for manager in two_managers:
            manager.set("item2", 2, dependencies={item_dep(2)})
        db.execute("INSERT INTO items VALUES (2)")  # streamed by the new slot
        wait_for(
            lambda: not any(m.exists("item2") for m in two_managers),
            what=f"the new slot's changes\n{process.output()}",
        )
        assert process.stop() == 0
