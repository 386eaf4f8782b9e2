"""Cross-process stampede protection: a short Redis lock per key whose waiters are woken.

The first process to miss a key takes ``P:l:{<key>}`` (SET NX PX) and computes. Others
register as waiters (``lua/lock_wait.lua``) and block on a wake-up list (BLPOP); the holder's
release (``lua/lock_release.lua``) pushes one wake-up per waiter, and they look the key up
again, finding the stored entry. The lock expires after its TTL if the holder dies, and a
waiter never blocks longer than that. The three keys share a hash tag, so this works on a
cluster too.
"""

from __future__ import annotations

import os
from typing import Any

from ..base import BackendMixin
from ..runners import Steps, script

__all__ = ["LockSteps"]


class LockSteps(BackendMixin):
    """The lock protocol, without I/O (run with ``steps.run_steps`` / ``arun_steps``)."""

    config: Any

    def _lock_keys(self, key: str) -> tuple[str, str, str]:
        base = f"{self.prefix}:l:{{{key}}}"
        return base, f"{base}:n", f"{base}:w"

    def _acquire_steps(self, key: str, ttl: float) -> Steps:
        lock, count, wake = self._lock_keys(key)
        token = os.urandom(10).hex()
        ttl_ms = max(1, round(ttl * 1000))
        (taken,) = yield [("SET", lock, token, "NX", "PX", ttl_ms)]
        if taken:
            return token
        (waiting,) = yield [script("lock_wait", (lock, count, wake), ttl_ms)]
        if int(waiting):
            wait = ttl
            timeout = getattr(self.config, "socket_timeout", None)
            if timeout:  # never block longer than the socket allows
                wait = min(wait, max(0.1, timeout * 0.8))
            yield [("BLPOP", wake, wait)]
        return None

    def _release_steps(self, key: str, token: str) -> Steps:
        (woken,) = yield [script("lock_release", self._lock_keys(key), token)]
        return int(woken)
