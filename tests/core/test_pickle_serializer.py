"""Pickle only by opt-in, and signed: a writable Redis cannot make a process run code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import redis

import depcache
from depcache import RedisConfig, SignedPickleSerializer, cache_with_deps, current_cache_key

KEY = "k" * 40


class Point:
    """A class JSON cannot store."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.redis
def test_round_trip_and_tampering_is_refused(
    redis_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEP_CACHE_PICKLE_KEY", KEY)
    config = RedisConfig(
        url=redis_url,
        prefix=prefix,
        serializer_class="depcache.serializers.pickle.SignedPickleSerializer",
    )
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    keys: list[str] = []
    calls: list[int] = []

    @cache_with_deps(cache_manager=manager)
    def point(x: int) -> Point:
        calls.append(x)
        keys.append(current_cache_key() or "")
        return Point(x, -x)

    assert point(3) == Point(3, -3)
    assert point(3) == Point(3, -3)
    assert calls == [3]

    # someone with write access to Redis but not the key plants a malicious pickle
    marker = tmp_path / "pwned"
    client = redis.Redis.from_url(redis_url)
    entry = f"{prefix}:k:{keys[0]}"
    stored = client.get(entry)
    assert stored is not None
    header = stored.split(b"\n", 1)[0]
    evil = pickle.dumps(_Evil(marker))
    forged = SignedPickleSerializer("x" * 40).dump(_Evil(marker))  # signed with another key
    for payload in (b"SP1" + b"\0" * 32 + evil, forged, evil):
        client.set(entry, header + b"\n" + payload)
        assert point(3) == Point(3, -3)  # unreadable: a miss, recomputed
        assert not marker.exists()
    assert calls == [3, 3, 3, 3]


def test_a_key_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEP_CACHE_PICKLE_KEY", raising=False)
    with pytest.raises(depcache.ConfigError, match="DEP_CACHE_PICKLE_KEY"):
        SignedPickleSerializer()
    with pytest.raises(depcache.ConfigError, match="at least 32"):
        SignedPickleSerializer("short")


def test_json_stays_the_default(prefix: str) -> None:
    manager = depcache.get_or_create_cache_manager(
        prefix, config=depcache.ConfigBase(prefix=prefix, backend="memory")
    )
    assert isinstance(manager.serializer, depcache.JSONSerializer)
    with pytest.raises(depcache.SerializationError, match="Point"):
        manager.set("p", Point(1, 2))
