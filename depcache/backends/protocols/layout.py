"""Where a manager's data lives in Redis, and reading an entry's guard without decoding it.

For a manager with prefix ``P`` (``docs/design.md`` has the full table):

* ``P:k:<key>``: an entry (``depcache/call/_entry.py``: kind, epoch, header, payload);
* ``P:d:{<dep>}:i``: the index of a dependency: a sorted set of the entries that depend on it,
  scored by their expiry, plus its *marker*, member ``''`` scored minus the epoch of its last
  invalidation (or of its first use);
* ``P:epoch``, and in its slot ``{P:epoch}:floor`` (entries computed before it are void),
  ``{P:epoch}:nodes`` (the masters' identities, ``backends/watch.py``) and ``{P:epoch}:f``
  (invalidations in flight, Redis Cluster).
"""

from __future__ import annotations

import json
from typing import Any

from ...config import RedisConfig
from ..base import BackendMixin

__all__ = ["Guard", "Layout", "read_guard", "stamp"]

#: the marker's member in an index
MARKER = ""


class Guard:
    """What a hit must check: the epoch its entry was computed from and its own dependencies."""

    __slots__ = ("dependencies", "epoch")

    def __init__(self, epoch: int, dependencies: list[str]) -> None:
        self.epoch = epoch
        self.dependencies = dependencies


def read_guard(blob: bytes, namespace: str) -> Guard | None:
    """The guard of an entry's bytes, or None when they are not an entry."""
    brace = blob.find(b"{", 1)
    end = blob.find(b"\n", max(brace, 0))
    if brace < 2 or end < 0 or not blob[1:brace].isdigit():
        return None
    if end == brace + 2:
        return Guard(int(blob[1:brace]), [])
    try:
        header: Any = json.loads(blob[brace:end])
    except ValueError:
        return None
    deps = header.get(namespace, []) if isinstance(header, dict) else None
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        return None
    return Guard(int(blob[1:brace]), deps)


def stamp(blob: bytes, epoch: int) -> bytes:
    """An entry made without an epoch (``manager.set``), stamped with ``epoch``."""
    return blob[:1] + b"%d" % epoch + blob[1:]


class Layout(BackendMixin):
    """Key names and settings every protocol of one manager shares."""

    config: RedisConfig

    def __init__(self, config: RedisConfig) -> None:
        super().__init__(config)
        self.config = config
        self.entry_prefix = self._cache_key("")
        self.guard_ms = max(1, round(config.guard_seconds * 1000))
        self.epoch_keys = (self._epoch_key(), self._floor_key(), self._nodes_key())
        before, _, after = self._deps_key("\x00").partition("\x00")
        self.index_affixes = (before, after)

    @staticmethod
    def ttl_ms(ttl: float | None) -> int:
        """A ttl in milliseconds, 0 for none."""
        return 0 if ttl is None else max(1, round(ttl * 1000))
