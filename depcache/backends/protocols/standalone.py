"""The protocol of a standalone Redis: one atomic script per operation.

Round trips: a lookup 1 (``lua/lookup.lua``: the entry, checked against the floor and the
markers of its dependencies, or the epoch to compute from), a store 1 (``lua/store.lua``,
whatever the number of dependencies), an invalidation 1 (``lua/invalidate.lua``, whatever the
number of entries, announcing it in the same script). See ``docs/design.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from ...announce import Announcer
from ..runners import Command, Steps, as_int, resp, script
from .layout import Layout
from .locks import LockSteps

__all__ = ["StandaloneProtocol"]

logger = logging.getLogger("depcache")


class StandaloneProtocol(Layout, LockSteps):
    """What a standalone Redis runs for each backend operation (no I/O)."""

    def lookup_command(self, key: str) -> Command:
        """The one command of a lookup: ``lua/lookup.lua`` with the entry and the prefix."""
        return script("lookup", (self.entry_prefix + key,), self.prefix)

    def lookup_packed(self) -> tuple[bytes, bytes, bytes]:
        """The lookup as RESP bytes around its one varying part, the entry key: (before,
        entry key prefix, after). The hit path writes ``before + $<n> key + after`` to the
        socket itself: through redis-py's command packing, each argument costs a hit time."""
        parts = [str(part).encode() for part in self.lookup_command("\x00")]
        at = parts.index((self.entry_prefix + "\x00").encode())
        packed = resp(*parts[:at]), resp(*parts[at + 1 :])
        # resp() counts its parts in a header: re-count them for the whole command
        head = b"*%d\r\n" % len(parts) + packed[0].split(b"\r\n", 1)[1]
        tail = packed[1].split(b"\r\n", 1)[1]
        return head, self.entry_prefix.encode(), tail

    def lookup_reply(self, key: str, reply: Any) -> tuple[bytes | None, int | None]:
        """The entry (a hit), or None and the epoch to compute from."""
        if type(reply) is bytes:
            return reply, None  # the epoch is only needed on a miss
        if type(reply) is list:  # [epoch, why]: the key holds something else than an entry
            logger.warning("depcache entry %s is unreadable and will be replaced", key)
            return None, as_int(reply[0])
        return None, as_int(reply)

    def lookup(self, key: str, floor: int | None = None) -> Steps:
        """See :meth:`lookup_command` (the script reads the floor: ``floor`` is ignored)."""
        (reply,) = yield [self.lookup_command(key)]
        return self.lookup_reply(key, reply)

    def store(
        self,
        key: str,
        value: bytes,
        ttl: float | None,
        dependencies: Iterable[str],
        epoch: int | None,
        may_evict: bool,
    ) -> Steps:
        """Store and index atomically unless a dependency was invalidated after ``epoch``
        (None: store at the current epoch). Returns whether it stored."""
        keys = [self._cache_key(key), *self.epoch_keys]
        keys.extend(self._deps_key(dep) for dep in sorted(set(dependencies)))
        check = "" if epoch is None else int(epoch)
        args = (value, self.ttl_ms(ttl), check, int(may_evict), self.guard_ms, key)
        (stored,) = yield [script("store", keys, *args)]
        return bool(as_int(stored))

    def invalidate(self, dependencies: Iterable[str], announcer: Announcer | None) -> Steps:
        """Invalidate atomically; return the number of entries removed."""
        deps = sorted(set(dependencies))
        if not deps:
            return 0
        keys = [self._epoch_key(), *(self._deps_key(dep) for dep in deps)]
        if announcer is None:
            args: tuple[Any, ...] = (self.guard_ms, "", "", self.entry_prefix)
        else:
            args = (self.guard_ms, announcer.channel, announcer.head(deps), self.entry_prefix)
        (removed,) = yield [script("invalidate", keys, *args)]
        return as_int(removed)

    def check(self, epoch: int, dependencies: Iterable[str], floor: int | None = None) -> Steps:
        """Whether an entry computed from ``epoch`` with ``dependencies`` is still valid (the
        script reads the floor: ``floor`` is ignored)."""
        keys = [self.epoch_keys[1], *(self._deps_key(dep) for dep in dependencies)]
        (valid,) = yield [script("check", keys, int(epoch))]
        return bool(as_int(valid))

    def delete(self, keys: Sequence[str]) -> Steps:
        """Delete entries; return how many existed."""
        if not keys:
            return 0
        (deleted,) = yield [("DEL", *(self._cache_key(k) for k in keys))]
        return as_int(deleted)

    def ttl(self, key: str) -> Steps:
        """Seconds left: -1 without expiry, -2 when missing."""
        (seconds,) = yield [("TTL", self._cache_key(key))]
        return as_int(seconds)
