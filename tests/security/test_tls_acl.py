"""TLS (rediss://), ACL users and connection settings, on standalone Redis and on a cluster."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps
from tests.support.servers import RedisServer, redis_cluster, redis_server, tls_files

pytestmark = pytest.mark.redis

PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(tls: dict[str, Path]) -> Iterator[RedisServer]:
    with redis_server(tls=tls) as server:
        yield server


@pytest.fixture(scope="module")
def tls_cluster(tls: dict[str, Path]) -> Iterator[list[RedisServer]]:
    with redis_cluster(3, tls) as nodes:
        yield nodes


def _add_acl_user(port: int, **options: object) -> None:
    client = redis.Redis(port=port, **options)  # type: ignore[arg-type]
    client.acl_setuser(
        "app",
        enabled=True,
        passwords=[f"+{PASSWORD}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all"],
    )


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    with redis_server("--requirepass", "admin-pw") as server:
        _add_acl_user(server.port, password="admin-pw")
        yield server


@pytest.fixture(scope="module")
def acl_cluster() -> Iterator[list[RedisServer]]:
    with redis_cluster(3, None, "--requirepass", "admin-pw", "--masterauth", "admin-pw") as nodes:
        for node in nodes:
            _add_acl_user(node.port, password="admin-pw")
        yield nodes


def _roundtrip(manager: depcache.CacheManager) -> None:
    calls = []

    @cache_with_deps(cache_manager=manager)
    def compute(x: int) -> tuple[int, str]:
        calls.append(x)
        add_dependency(f"x:{x}")
        return (x, "ok")

    assert compute(1) == (1, "ok")
    assert compute(1) == (1, "ok")
    assert calls == [1]
    assert manager.invalidate_dependency("x:1") == 1
    assert compute(1) == (1, "ok")
    assert calls == [1, 1]


def _with_user(url: str) -> str:
    return url.replace("://", f"://app:{PASSWORD}@", 1)


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_tls(
    request: pytest.FixtureRequest, topology: str, tls: dict[str, Path], prefix: str
) -> None:
    if topology == "standalone":
        url = request.getfixturevalue("tls_server").url
    else:
        url = request.getfixturevalue("tls_cluster")[0].url
    assert url.startswith("rediss://")
    config = RedisConfig(
        url=url, prefix=prefix, cluster=topology == "cluster", ssl_ca_certs=str(tls["ca"])
    )
    _roundtrip(depcache.get_or_create_cache_manager(prefix, config=config))


def test_tls_with_an_unknown_ca_is_a_clear_error(tls_server: RedisServer, prefix: str) -> None:
    manager = depcache.get_or_create_cache_manager(
        prefix, config=RedisConfig(url=tls_server.url, prefix=prefix)
    )
    with pytest.raises(depcache.BackendError, match=f"127.0.0.1:{tls_server.port}"):
        manager.get("anything")


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_acl_user_and_password(request: pytest.FixtureRequest, topology: str, prefix: str) -> None:
    if topology == "standalone":
        url = request.getfixturevalue("acl_server").url
    else:
        url = request.getfixturevalue("acl_cluster")[0].url
    cluster = topology == "cluster"
    by_url = RedisConfig(url=_with_user(url), prefix=prefix, cluster=cluster)
    _roundtrip(depcache.get_or_create_cache_manager(prefix, config=by_url))

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    by_parts = RedisConfig(
        host="127.0.0.1",
        port=port,
        username="app",
        password=PASSWORD,
        prefix=f"{prefix}p",
        cluster=cluster,
    )
    _roundtrip(depcache.get_or_create_cache_manager(f"{prefix}p", config=by_parts))


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_wrong_password_is_a_clear_error_without_the_password(
    request: pytest.FixtureRequest, topology: str, prefix: str
) -> None:
    if topology == "standalone":
        url = request.getfixturevalue("acl_server").url
    else:
        url = request.getfixturevalue("acl_cluster")[0].url
    wrong = url.replace("://", "://app:not-the-password@", 1)
    config = RedisConfig(url=wrong, prefix=prefix, cluster=topology == "cluster")
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    with pytest.raises(depcache.BackendError) as caught:
        manager.get("anything")
    assert "not-the-password" not in str(caught.value)
    assert "not-the-password" not in repr(config)
    assert "not-the-password" not in str(config.to_dict())


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
async def test_max_connections_makes_callers_wait_not_fail(
    request: pytest.FixtureRequest, topology: str, prefix: str
) -> None:
    if topology == "standalone":
        url = request.getfixturevalue("standalone_servers")[0].url
    else:
        url = request.getfixturevalue("cluster_url")
    config = RedisConfig(
        url=url,
        prefix=prefix,
        cluster=topology == "cluster",
        max_connections=2,
        socket_timeout=5,
    )
    manager = depcache.get_or_create_cache_manager(prefix, config=config)

    @cache_with_deps(cache_manager=manager)
    async def value(i: int) -> int:
        add_dependency("all")
        await asyncio.sleep(0.001)
        return i

    assert await asyncio.gather(*(value(i) for i in range(200))) == list(range(200))
    assert await manager.ainvalidate_dependency("all") == 200


def test_socket_timeout_bounds_a_call_to_a_silent_server(prefix: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections but never answers
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        config = RedisConfig(url=f"redis://127.0.0.1:{port}/0", prefix=prefix, socket_timeout=0.5)
        manager = depcache.get_or_create_cache_manager(prefix, config=config)
        with pytest.raises(depcache.BackendError, match="Timeout"):
            manager.get("anything")
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        listener.close()


def test_explicit_host_and_port_win_over_redis_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    assert RedisConfig(host="127.0.0.1", port=7001).url == "redis://127.0.0.1:7001/0"
    assert RedisConfig().url == "redis://elsewhere:6379/0"
    assert RedisConfig(url="redis://given:1/2", host="ignored").url == "redis://given:1/2"
