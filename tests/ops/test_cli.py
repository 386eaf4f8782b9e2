"""The depcache command line, run as a real subprocess against real Redis servers."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

import depcache
from depcache import RedisConfig, add_dependency, cache_with_deps
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "depcache.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _wait_until_subscribed(watcher: subprocess.Popen[str]) -> str:
    assert watcher.stderr is not None
    line = watcher.stderr.readline()  # printed once the subscription is confirmed
    assert line.startswith("watching"), line
    return line


def _fill(manager: depcache.CacheManager, n: int) -> None:
    @cache_with_deps(cache_manager=manager)
    def item(i: int) -> int:
        add_dependency("shared")
        add_dependency(f"item:{i}")
        return i

    for i in range(n):
        item(i)


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_stats_invalidate_and_watch(
    request: pytest.FixtureRequest, topology: str, prefix: str
) -> None:
    cluster = topology == "cluster"
    url = request.getfixturevalue("cluster_url" if cluster else "redis_url")
    flags = ["--url", url, "--prefix", prefix, *(["--cluster"] if cluster else [])]
    manager = depcache.get_or_create_cache_manager(
        prefix, config=RedisConfig(url=url, prefix=prefix, cluster=cluster)
    )
    _fill(manager, 5)

    stats = _cli("stats", *flags, "--json")
    assert stats.returncode == 0, stats.stderr
    numbers = json.loads(stats.stdout)
    assert numbers["entries"] == 5
    assert numbers["dependency_indexes"] == 6
    assert numbers["invalidation_markers"] == 6  # one per index, in it (member '')
    assert numbers["memory_bytes"] > 0

    watcher = subprocess.Popen(
        [sys.executable, "-m", "depcache.cli", "watch", *flags, "--json", "--count", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until_subscribed(watcher)  # a message published before would not be replayed
        done = _cli("invalidate", "shared", *flags)
        assert done.returncode == 0, done.stderr
        assert "5 entries removed" in done.stdout
        out, _ = watcher.communicate(timeout=20)
    finally:
        watcher.kill()
    message = json.loads(out.strip().splitlines()[-1])
    assert message["dependencies"] == ["shared"]
    assert message["removed"] == 5
    assert json.loads(_cli("stats", *flags, "--json").stdout)["entries"] == 0


def test_watch_prints_readable_lines(redis_url: str, prefix: str) -> None:
    """Every prefix is watched: lines of other prefixes (other tests' leftovers) may come
    first; ours must come."""
    manager = depcache.get_or_create_cache_manager(
        prefix, config=RedisConfig(url=redis_url, prefix=prefix)
    )
    watcher = subprocess.Popen(
        [sys.executable, "-m", "depcache.cli", "watch", "--url", redis_url, "--count", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        assert "watching *:invalidations" in _wait_until_subscribed(watcher)
        manager.invalidate_dependency("user:42")
        assert watcher.stdout is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = watcher.stdout.readline()
            if not line:
                break
            seen.append(line)
            if f"  {prefix}  " in line:
                break
    finally:
        watcher.kill()
        watcher.communicate()
    ours = [line for line in seen if f"  {prefix}  " in line]
    assert ours, seen
    assert f"{prefix}  invalidated user:42  removed=0" in ours[0]


def test_bad_url_is_a_clear_error() -> None:
    result = _cli("stats", "--url", "http://example.invalid/")
    assert result.returncode == 2
    assert "must start with redis://" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_server_is_a_clear_error_without_password(
    standalone_servers: list[RedisServer],
) -> None:
    result = _cli("invalidate", "x", "--url", "redis://app:hunter2@127.0.0.1:1/0")
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr
