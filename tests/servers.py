"""Extra Redis servers for tests: standalone servers and a 3-master Redis Cluster on free ports.

Processes are run by mirakuru (started, waited for, stopped); ports come from port-for.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import port_for
import redis
from mirakuru import TCPExecutor

__all__ = ["RedisServer", "redis_cluster", "redis_server"]


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (apt-get install redis-server redis-tools)")
    return path


class RedisServer:
    """One redis-server process run by mirakuru."""

    def __init__(self, port: int, workdir: Path, *extra: str) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        command = [
            _binary("redis-server"),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
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


@contextmanager
def redis_server(*extra: str) -> Iterator[RedisServer]:
    """A standalone server on a free port, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="depcache-redis-") as workdir:
        server = RedisServer(port_for.select_random(), Path(workdir), *extra).start()
        try:
            yield server
        finally:
            server.stop()


@contextmanager
def redis_cluster(masters: int = 3) -> Iterator[list[RedisServer]]:
    """A Redis Cluster of ``masters`` masters (no replicas) on free ports, stopped on exit."""
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="depcache-rc-")))
        nodes = []
        for _ in range(masters):
            port = port_for.select_random()
            node_dir = workdir / str(port)
            node_dir.mkdir()
            node = RedisServer(
                port,
                node_dir,
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "5000",
            ).start()
            stack.callback(node.stop)
            nodes.append(node)
        subprocess.run(
            [
                _binary("redis-cli"),
                "--cluster", "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas", "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait_cluster_ok(nodes)
        yield nodes


def _wait_cluster_ok(nodes: list[RedisServer], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for node in nodes:
            info = redis.Redis(port=node.port).cluster("info")
            states.append(info.get("cluster_state") if isinstance(info, dict) else info)
        if all(s == "ok" for s in states):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster did not become ready: {states}")
        time.sleep(0.2)
