"""Extra Redis servers for tests: standalone servers and a 3-master Redis Cluster on free ports.

Processes are run by mirakuru (started, waited for, stopped); ports come from port-for.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import port_for
import redis
from mirakuru import TCPExecutor
from mirakuru.exceptions import ProcessExitedWithError

__all__ = ["RedisServer", "free_port", "redis_cluster", "redis_server", "tls_files"]

# a cluster node also listens on its port + 10000 (the cluster bus), so stay well below that
_PORTS = set(range(20000, 50000))


def free_port() -> int:
    """A free TCP port whose cluster-bus twin (+10000) is free too."""
    while True:
        port = int(port_for.select_random(ports=_PORTS))
        if port_for.is_available(port + 10000):
            return port


def tls_files(directory: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost, made with openssl."""
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "redis.key", directory / "redis.csr", directory / "redis.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl = _binary("openssl")
    for command in (
        [
            openssl,
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-days",
            "2",
            "-keyout",
            ca_key,
            "-out",
            ca_crt,
            "-subj",
            "/CN=depcache-test-ca",
        ],
        [
            openssl,
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            "/CN=127.0.0.1",
        ],
        [
            openssl,
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca_crt,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            crt,
            "-days",
            "2",
            "-extfile",
            ext,
        ],
    ):
        subprocess.run([str(c) for c in command], check=True, capture_output=True, timeout=60)
    return {"ca": ca_crt, "cert": crt, "key": key}


def tls_server_args(files: dict[str, Path], port: int) -> list[str]:
    """redis-server arguments serving TLS only, on ``port``, without client certificates."""
    return [
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(files["cert"]),
        "--tls-key-file",
        str(files["key"]),
        "--tls-ca-cert-file",
        str(files["ca"]),
        "--tls-auth-clients",
        "no",
    ]


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (apt-get install redis-server redis-tools)")
    return path


class RedisServer:
    """One redis-server process run by mirakuru."""

    def __init__(self, port: int, workdir: Path, *extra: str, tls: bool = False) -> None:
        self.port = port
        self.url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{port}/0"
        command = [
            _binary("redis-server"),
            *(() if tls else ("--port", str(port))),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            *extra,
        ]
        self.executor = TCPExecutor(command, host="127.0.0.1", port=port, timeout=20)

    def start(self) -> RedisServer:
        """Start the server and wait until it accepts connections."""
        self.executor.start()
        return self

    def stop(self) -> None:
        """Stop the server (its data is lost: nothing is persisted)."""
        self.executor.stop()

    def running(self) -> bool:
        """Whether the process is alive."""
        return bool(self.executor.running())

    def pause(self) -> None:
        """SIGSTOP the server: the kernel still accepts connections and buffers commands, but
        nothing answers until :meth:`resume` (a hung server)."""
        os.kill(self._pid(), signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        os.kill(self._pid(), signal.SIGCONT)

    def _pid(self) -> int:
        process = self.executor.process
        assert process is not None, "the server is not running"
        return process.pid


@contextmanager
def redis_server(*extra: str, tls: dict[str, Path] | None = None) -> Iterator[RedisServer]:
    """A standalone server on a free port (TLS only when ``tls`` files are given)."""
    with tempfile.TemporaryDirectory(prefix="depcache-redis-") as workdir:
        port = free_port()
        args = [*extra, *(tls_server_args(tls, port) if tls else [])]
        server = RedisServer(port, Path(workdir), *args, tls=tls is not None).start()
        try:
            yield server
        finally:
            server.stop()


def _start_node(
    workdir: Path, tls: dict[str, Path] | None, extra: tuple[str, ...], attempts: int = 5
) -> RedisServer:
    """Start one cluster node; retry on another port if a concurrent process took ours."""
    for attempt in range(attempts):
        port = free_port()
        node_dir = workdir / str(port)
        node_dir.mkdir()
        tls_args = [*tls_server_args(tls, port), "--tls-cluster", "yes"] if tls else []
        node = RedisServer(
            port,
            node_dir,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            f"nodes-{port}.conf",
            "--cluster-node-timeout",
            "5000",
            *tls_args,
            *extra,
            tls=tls is not None,
        )
        try:
            return node.start()
        except ProcessExitedWithError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@contextmanager
def redis_cluster(
    masters: int = 3, tls: dict[str, Path] | None = None, *extra: str, replicas: int = 0
) -> Iterator[list[RedisServer]]:
    """A Redis Cluster of ``masters`` masters (and ``replicas`` replicas of each) on free
    ports, stopped on exit.

    With ``tls`` files, clients and the cluster bus speak TLS only."""
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="depcache-rc-")))
        nodes = []
        for _ in range(masters * (1 + replicas)):
            node = _start_node(workdir, tls, extra)
            stack.callback(node.stop)
            nodes.append(node)
        subprocess.run(
            [
                _binary("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
                *(["--tls", "--cacert", str(tls["ca"])] if tls else []),
                *_cli_auth(extra),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait_cluster_ok(nodes, tls, _cli_auth(extra)[1:])
        yield nodes


def _cli_auth(extra: tuple[str, ...]) -> list[str]:
    """``-a PASSWORD`` for redis-cli when the servers were given ``--requirepass``."""
    args = list(extra)
    if "--requirepass" in args:
        return ["-a", args[args.index("--requirepass") + 1]]
    return []


def _wait_cluster_ok(
    nodes: list[RedisServer],
    tls: dict[str, Path] | None,
    password: list[str],
    timeout: float = 30.0,
) -> None:
    options: dict[str, object] = {"password": password[0] if password else None}
    if tls:
        options.update(ssl=True, ssl_ca_certs=str(tls["ca"]))
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for node in nodes:
            info = redis.Redis(port=node.port, **options).cluster("info")  # type: ignore[arg-type]
            states.append(info.get("cluster_state") if isinstance(info, dict) else info)
        if all(s == "ok" for s in states):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster did not become ready: {states}")
        time.sleep(0.2)
