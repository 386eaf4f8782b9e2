"""redis-py clients from a RedisConfig, running our Lua scripts, and errors as BackendError."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Full, LifoQueue
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisClusterException

from ..config import RedisConfig
from ..errors import BackendError, ConfigError

__all__ = [
    "REDIS_ERRORS",
    "QuickCheckout",
    "backend_error",
    "backend_errors",
    "create_async_client",
    "create_sync_client",
]


_NONE_IDLE = object()

#: this process's id, kept without a system call per checkout (os.getpid is one)
_process = [os.getpid()]


def _forked() -> None:
    _process[0] = os.getpid()


os.register_at_fork(after_in_child=_forked)


class _ConnectionStack(LifoQueue[Any]):
    """The idle connections of a sync blocking pool, with a fast path when none must wait.

    ``BlockingConnectionPool`` takes a connection with ``get`` and returns it with
    ``put_nowait``; a plain LifoQueue runs its Condition machinery both times, about a
    microsecond per command. Here an available connection is taken, and one is returned,
    under the queue's mutex alone; waiting for a connection (the pool exhausted) and waking
    a waiter are LifoQueue's own.
    """

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        with self.mutex:
            # nobody waits in put(): the pool only puts _nowait
            item: Any = self.queue.pop() if self.queue else _NONE_IDLE
        if item is _NONE_IDLE:
            item = super().get(block, timeout)
        if item is not None:  # None: a placeholder for a connection not made yet
            item.depcache_quick = False  # in redis-py's hands now: see QuickCheckout
        return item

    def put_nowait(self, item: Any) -> None:
        with self.mutex:
            if 0 < self.maxsize <= len(self.queue):
                raise Full
            self.queue.append(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()  # a caller may be waiting in get() for a connection

    def take_connected(self) -> Any:
        """The most recently returned connection if QuickCheckout may take it (its last user
        was our runner, which read every reply, and it is connected), else None."""
        with self.mutex:
            if self.queue:
                top = self.queue[-1]
                if getattr(top, "depcache_quick", False) and top._sock is not None:
                    top.depcache_quick = False  # until the runner gives it back, all read
                    return self.queue.pop()
        return None


class QuickCheckout:
    """Take a connection from, and return it to, a pool made by :func:`create_sync_client`, without
    redis-py's per-checkout bookkeeping.

    redis-py 8's ``get_connection`` and ``release`` cost about 9 us together, this 1.6 (measured; a
    Redis hit costs about 100): a process-id check, observability counters, a ``poll`` of the socket
    for data left unread by a previous user. The runner that uses this reads every reply of what it
    sends, and disconnects a connection whose exchange was cut short, so a connection it returns
    holds no unread data: it marks it so (``depcache_quick``), and a quick ``take`` takes only a
    marked one. Whenever redis-py's own commands take a connection (the stack's ``get``), the mark
    is cleared, so that connection goes through ``get_connection``'s checks again before a quick
    take may have it. When the quick path does not apply it says so (``take`` returns None) and the
    caller uses the pool's own methods: a pool redis-py made, one with a client-side cache or
    maintenance notifications asked for explicitly (``enabled=True``), a pool in maintenance, a
    process other than the one that made the pool (a fork), no idle connection marked and connected.
    What the quick path does not do before sending: read push notifications that arrived while the
    connection was idle (with redis-py's default, maintenance notifications "auto", a server that
    sends them may): the reply's read handles them as it meets them, as it does any push that
    arrives during a command. A socket the server closed while idle fails the exchange before the
    command runs, and the runner sends it again through redis-py, which reconnects. Not recorded:
    redis-py's observability counts of connections in use.
    """

    __slots__ = ("enabled", "pool")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.enabled = self.supports(pool)

    def acquire(self) -> tuple[Any, bool]:
        """A connection and whether it was taken quick (else from ``get_connection``, whose
        errors it raises)."""
        connection = self.take() if self.enabled else None
        if connection is not None:
            return connection, True
        return self.pool.get_connection(), False

    def finish(self, connection: Any, *, quick: bool, clean: bool) -> None:
        """Return a connection :meth:`acquire` gave: ``clean``, every reply read (the next quick
        take may have it); else the exchange broke or was cut short, and a reply may be left
        unread, so it is disconnected first."""
        if clean and self.enabled:
            self.give(connection, quick=quick)
            return
        if not clean:
            connection.disconnect()
        self.pool.release(connection)

    @staticmethod
    def supports(pool: Any) -> bool:
        """Whether ``pool`` is one the quick path knows."""
        notifications = getattr(pool, "maint_notifications_enabled", None)
        return (
            isinstance(getattr(pool, "pool", None), _ConnectionStack)
            and getattr(pool, "cache", None) is None
            # True only when asked for explicitly; redis-py's default, "auto", stays quick
            and not (notifications is not None and notifications() is True)
        )

    def take(self) -> Any:
        """An idle connected connection, or None: use ``pool.get_connection()``."""
        pool = self.pool
        if pool.pid != _process[0] or getattr(pool, "_in_maintenance", False):
            return None
        stack = pool.pool  # read each time: after a fork the pool makes a new one
        return stack.take_connected() if isinstance(stack, _ConnectionStack) else None

    def give(self, connection: Any, *, quick: bool) -> None:
        """Return a connection after an exchange that read every reply: ``quick``, one
        :meth:`take` gave (else one ``get_connection`` gave, which ``release`` takes back).
        Either way the next quick ``take`` may have it."""
        pool = self.pool
        connection.depcache_quick = True
        stack = pool.pool
        if not quick or pool.pid != _process[0] or not isinstance(stack, _ConnectionStack):
            pool.release(connection)  # the pool decides (a fork in between: not ours to keep)
            return
        try:
            stack.put_nowait(connection)
        except Full:  # pragma: no cover - the pool holds at most max_connections
            connection.disconnect()


def _options(config: RedisConfig) -> dict[str, Any]:
    options: dict[str, Any] = dict(config.additional_connection_kwargs)
    if config.socket_timeout is not None:
        options.setdefault("socket_timeout", config.socket_timeout)
        options.setdefault("socket_connect_timeout", config.socket_timeout)
    return options


def _check_standalone(config: RedisConfig) -> None:
    if config.cluster:
        raise ConfigError(
            f"RedisConfig(cluster=True) for {config.safe_url} needs the cluster backends "
            "(RedisClusterCacheBackend, chosen automatically by CacheManager)"
        )


def create_sync_client(config: RedisConfig) -> redis.Redis:
    """A redis-py client for ``config``.

    The pool is a blocking one: when all ``max_connections`` are busy, callers wait for one
    rather than fail. Raises ConfigError for settings redis-py rejects.
    """
    _check_standalone(config)
    options = _options(config)
    try:
        pool = redis.BlockingConnectionPool.from_url(
            config.url,
            max_connections=config.max_connections,
            queue_class=_ConnectionStack,
            **options,
        )
        return redis.Redis.from_pool(pool)  # the client owns the pool: close() closes it
    except ValueError as exc:
        raise ConfigError(f"invalid Redis settings for {config.safe_url}: {exc}") from None


def create_async_client(config: RedisConfig) -> aioredis.Redis:
    """An asyncio redis-py client for ``config`` (see :func:`create_sync_client`)."""
    _check_standalone(config)
    options = _options(config)
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            config.url, max_connections=config.max_connections, **options
        )
        return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
    except ValueError as exc:
        raise ConfigError(f"invalid Redis settings for {config.safe_url}: {exc}") from None


#: what redis-py raises when Redis fails (the errors :func:`backend_errors` converts)
REDIS_ERRORS = (redis.RedisError, RedisClusterException, OSError)


def backend_error(config: RedisConfig, exc: BaseException) -> BackendError:
    """The BackendError for ``exc``, naming the server (never the password)."""
    return BackendError(f"Redis at {config.safe_url} failed: {type(exc).__name__}: {exc}")


@contextmanager
def backend_errors(config: RedisConfig) -> Iterator[None]:
    """Re-raise redis-py and socket errors as BackendError naming the server (no password).

    (The hit path catches :data:`REDIS_ERRORS` itself: a generator-based context manager costs
    about a microsecond per use.)"""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise backend_error(config, exc) from exc
