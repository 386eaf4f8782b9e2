"""Fixtures for change data capture: a PostgreSQL with ``wal_level=logical``, a database per
test, ``depcache cdc`` as a real process, and a real depcache worker applying its events.

Registered from conftest.py, so any test (the randomized checkers too) can ask for them:

- ``logical_postgres`` (session): a server started with initdb for the session (see
  tests/support/pg_server.py); missing binaries skip locally and fail in CI;
- ``pg_database``: a new database on it, dropped afterwards (with every slot of it);
- ``cdc_pipeline``: the test's database, two registered managers on Redis, an embedded worker
  on RabbitMQ consuming the test's exchange, and a running ``depcache cdc`` process streaming the
  database to that exchange; :meth:`CdcPipeline.barrier` waits until everything committed before
  it was invalidated on every manager.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

import depcache
import depcache_celery
from tests.support.celery_fixtures import Names, embedded_worker, make_app, wait_for
from tests.support.pg_server import PostgresServer, pg_binaries, postgres_server

__all__ = ["CdcPipeline", "CdcProcess", "PgDatabase"]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def logical_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 server with ``wal_level=logical`` for the session."""
    if pg_binaries() is None:
        message = "PostgreSQL binaries (initdb, postgres) are not installed"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with postgres_server(
        wal_level="logical",
        max_replication_slots="100",
        max_wal_senders="100",
        max_connections="200",
    ) as server:
        yield server


@dataclass
class PgDatabase:
    """One test's database on the logical server."""

    server: PostgresServer
    name: str
    dsn: str
    uid: str

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        """A new autocommit connection."""
        return psycopg.connect(self.dsn, autocommit=True)

    def execute(self, *statements: str) -> None:
        """Run statements in one transaction, committed."""
        with psycopg.connect(self.dsn) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]  # test SQL

    def slot_status(self, slot: str) -> tuple[str | None, bool] | None:
        """(confirmed_flush_lsn, active) of ``slot``, or None when it does not exist."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT confirmed_flush_lsn::text, active FROM pg_replication_slots "
                "WHERE slot_name = %s",
                [slot],
            ).fetchone()
        return None if row is None else (row[0], bool(row[1]))  # type: ignore[return-value]


@pytest.fixture
def pg_database(logical_postgres: PostgresServer) -> Iterator[PgDatabase]:
    """A database of its own on the logical server; dropped, with its slots, afterwards."""
    uid = uuid.uuid4().hex[:10]
    name = f"cdc_{uid}"
    dsn = logical_postgres.create_database(name)
    yield PgDatabase(logical_postgres, name, dsn, uid)
    with psycopg.connect(logical_postgres.dsn(), autocommit=True) as conn:
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", [name]
        ).fetchall():
            with contextlib.suppress(psycopg.Error):
                conn.execute(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                    "WHERE slot_name = %s AND active_pid IS NOT NULL",
                    [slot],
                )
                for _ in range(50):
                    try:
                        conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                        break
                    except psycopg.errors.ObjectInUse:
                        time.sleep(0.1)
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


class CdcProcess:
    """``depcache cdc`` in a subprocess, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CdcProcess:
        """Start it (again)."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "depcache.cli", "cdc", *self.args],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to publish or confirm anything more."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, and the exit status (killed if it does not exit in time)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def cdc_env(names: Names, **extra: str) -> dict[str, str]:
    """The environment of a CDC process publishing to the test's exchange and queue."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPCACHE_", "DEP_CACHE_"))}
    env.update(
        DEPCACHE_EXCHANGE=names.exchange,
        DEPCACHE_QUEUE=names.queue,
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        **extra,
    )
    return env


@dataclass
class CdcPipeline:
    """A database streamed by a running ``depcache cdc`` to a running worker (see the module's
    docstring)."""

    db: PgDatabase
    cdc: CdcProcess
    slot: str
    managers: tuple[depcache.CacheManager, ...]
    names: Names
    broker_url: str
    _barriers: int = field(default=0)

    def barrier(self, timeout: float = 30.0) -> None:
        """Return once every change committed before the call was invalidated on every manager.

        Writes a row to the table ``cdc_barrier`` and waits until an entry depending on it is
        gone from every manager: the events of one stream are applied in order on each manager.
        """
        self._barriers += 1
        dep = f"db:public.cdc_barrier:id={self._barriers}"
        key = f"barrier:{self._barriers}"
        for manager in self.managers:
            manager.set(key, 1, dependencies={dep})
        self.db.execute(f"INSERT INTO cdc_barrier (id) VALUES ({self._barriers})")
        wait_for(
            lambda: not any(m.exists(key) for m in self.managers),
            timeout=timeout,
            what=f"the CDC barrier {self._barriers}\n{self.cdc.output()[-3000:]}",
        )


def start_cdc(
    db: PgDatabase, broker_url: str, names: Names, log: Path, *args: str, slot: str | None = None
) -> tuple[CdcProcess, str]:
    """A started CDC process for ``db`` on a slot and publication of the test's own."""
    slot = slot or f"s_{db.uid}"
    process = CdcProcess(
        [
            *("--dsn", db.dsn, "--broker", broker_url),
            *("--slot", slot, "--publication", f"p_{db.uid}"),
            *("--status-interval", "1", "--retry-backoff-max", "1"),
            *args,
        ],
        cdc_env(names),
        log,
    ).start()
    return process, slot


def wait_streaming(db: PgDatabase, slot: str, process: CdcProcess, timeout: float = 30) -> None:
    """Wait until ``process`` streams ``slot`` (the slot is active)."""
    wait_for(
        lambda: (status := db.slot_status(slot)) is not None and status[1],
        timeout=timeout,
        what=f"the CDC process to stream slot {slot}\n{process.output()[-3000:]}",
    )


@pytest.fixture
def cdc_pipeline(
    pg_database: PgDatabase,
    rabbitmq_broker: str,
    names: Names,
    two_managers: tuple[depcache.CacheManager, depcache.CacheManager],
    tmp_path: Path,
) -> Iterator[CdcPipeline]:
    """See :class:`CdcPipeline`; the CDC process is stopped and the worker shut down after."""
    pg_database.execute("CREATE TABLE cdc_barrier (id int PRIMARY KEY)")
    app = make_app(rabbitmq_broker, names)
    depcache_celery.install(app)
    process, slot = start_cdc(pg_database, rabbitmq_broker, names, tmp_path / "cdc.log")
    try:
        with embedded_worker(app):
            wait_streaming(pg_database, slot, process)
            pipeline = CdcPipeline(pg_database, process, slot, two_managers, names, rabbitmq_broker)
            pipeline.barrier()
            yield pipeline
    finally:
        process.stop()
