"""A throw-away PostgreSQL server for tests: ``initdb`` in a temp dir, started on a free port.

Uses the machine's PostgreSQL binaries (``initdb``/``postgres`` on PATH, else the newest
``/usr/lib/postgresql/*/bin``). As root, the server runs as the ``postgres`` user (PostgreSQL
refuses to run as root). Settings favour speed over durability (``fsync=off``): the data
directory is deleted when the server stops.

    with postgres_server(wal_level="logical") as server:
        server.dsn("postgres")          # postgresql://postgres@127.0.0.1:PORT/postgres
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tests.support.servers import free_port

__all__ = ["PostgresServer", "pg_binaries", "postgres_server"]

SUPERUSER = "postgres"


def pg_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``, or None when they are not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: [int(part) for part in p.split("/")[4].split(".") if part.isdigit()],
    )
    return Path(candidates[-1]).parent if candidates else None


def _run_as() -> tuple[str | None, int | None, int | None]:
    """(user, uid, gid) to run the server as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None, None, None
    entry = pwd.getpwnam(SUPERUSER)  # KeyError: no postgres user (install the postgresql package)
    return SUPERUSER, entry.pw_uid, entry.pw_gid


class PostgresServer:
    """One PostgreSQL server process on ``127.0.0.1:port`` (TCP only, trust authentication)."""

    def __init__(self, bindir: Path, workdir: Path, port: int, settings: dict[str, str]) -> None:
        self.bindir = bindir
        self.datadir = workdir / "data"
        self.port = port
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "postgres.log"
        self._user, self._uid, self._gid = _run_as()

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq URI for ``dbname`` as the superuser."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def initdb(self) -> None:
        """Create the data directory (no fsync: a test cluster)."""
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                *("-D", str(self.datadir), "-U", SUPERUSER, "-A", "trust"),
                *("-E", "UTF8", "--locale", "C.UTF-8", "--no-sync"),
            ],
            check=True,
            capture_output=True,
            timeout=120,
            user=self._user,
        )

    def start(self, timeout: float = 30.0) -> PostgresServer:
        """Start the server and wait until it accepts connections."""
        options: list[str] = []
        for name, value in {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "fsync": "off",
            "full_page_writes": "off",
            **self.settings,
        }.items():
            options += ["-c", f"{name}={value}"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.datadir), *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self._user,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited at startup:\n{self.log.read_text()[-3000:]}")
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (SIGINT), killed if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(2)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its DSN."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]  # a test's name
        return self.dsn(name)

    def prepare(self, workdir: Path) -> None:
        """Hand the work directory to the server's user."""
        if self._uid is not None and self._gid is not None:
            os.chown(workdir, self._uid, self._gid)


@contextlib.contextmanager
def postgres_server(**settings: str) -> Iterator[PostgresServer]:
    """A new server with these ``postgresql.conf`` settings, deleted on exit.

    Raises:
        RuntimeError: the PostgreSQL binaries are not installed.
    """
    bindir = pg_binaries()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    workdir = Path(tempfile.mkdtemp(prefix="depcache-pg-"))
    try:
        server = PostgresServer(bindir, workdir, free_port(), settings)
        server.prepare(workdir)
        server.initdb()
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
