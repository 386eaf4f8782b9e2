"""Running a batch of commands on a Redis Cluster in one round trip, on the shortest path.

redis-py's ``RedisCluster`` spends most of a ``GET``'s time in Python: parsing the command to
find its keys, routing, retry bookkeeping, response callbacks (measured: a raw ``GET`` through
``RedisCluster.execute_command`` cost 1.8x the same ``GET`` written to the node's connection).
The runners here route each command themselves (the slot of its key, the client's own slot
map), write every node's commands at once and then read the replies, so one batch costs one
round trip whatever the number of nodes, and a one-command batch costs about what a standalone
client does.

Everything the fast path does not handle goes to redis-py, which does: a slot the map does not
know, a ``MOVED``/``ASK`` redirection (the commands that got one are sent again through
``RedisCluster.execute_command``, which follows it and refreshes the map), a broken connection
(after which the client re-reads the topology). A timeout is not retried: a hung node costs at
most ``socket_timeout`` per call, then a :class:`~depcache.errors.BackendError`.
Scripts missing on a node (``NOSCRIPT``) are sent again as ``EVAL`` of their source.

Replies are raw (no redis-py response callbacks); the protocols read both forms.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress
from typing import Any

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from .runners import Command, by_source, pack

__all__ = ["AsyncClusterRunner", "ClusterRunner", "routing_key"]

#: errors after which the command is sent again through redis-py, which handles them
_REDIRECTS = (MovedError, AskError, TryAgainError, ClusterDownError)


def routing_key(command: Command) -> Any:
    """The key a command is routed by, or None for a command that any node may run."""
    name = command[0]
    if name in ("EVALSHA", "EVAL"):
        return command[3] if int(command[2]) else None
    if name == "PUBLISH":
        return None
    return command[1]


class _Reroute(Exception):
    """The fast path cannot route this batch: let redis-py do it."""


def _group(client: Any, batch: list[Command]) -> dict[str, tuple[Any, list[int]]]:
    """The batch's commands by node: ``{node name: (node, command indexes)}``."""
    slots = client.nodes_manager.slots_cache
    groups: dict[str, tuple[Any, list[int]]] = {}
    for at, command in enumerate(batch):
        key = routing_key(command)
        if key is None:
            node = client.get_default_node()
        else:
            nodes = slots.get(client.keyslot(key))
            if not nodes:
                raise _Reroute
            node = nodes[0]
        if node is None:
            raise _Reroute
        group = groups.get(node.name)
        if group is None:
            groups[node.name] = (node, [at])
        else:
            group[1].append(at)
    return groups


def _settle(errors: dict[int, ResponseError]) -> tuple[list[int], list[int]]:
    """Sort the commands that failed: (sent again as EVAL, sent again through redis-py); any
    other error is raised."""
    unscripted, redirected = [], []
    for at, error in errors.items():
        if isinstance(error, NoScriptError):
            unscripted.append(at)
        elif isinstance(error, _REDIRECTS):
            redirected.append(at)
        else:
            raise error
    return unscripted, redirected


class ClusterRunner:
    """Runs batches on a sync ``RedisCluster``; at most ``max_connections`` at a time (redis-py's
    cluster pools fail when full: callers wait here for a free slot instead)."""

    def __init__(self, client: RedisCluster, max_connections: int) -> None:
        self.client: Any = client  # redis-py leaves RedisCluster.execute_command untyped
        self._slots = threading.BoundedSemaphore(max_connections)

    def __call__(self, batch: list[Command]) -> list[Any]:
        with self._slots:
            try:
                return self._fast(batch)
            except _Reroute:
                return [self._slow(command) for command in batch]

    def _slow(self, command: Command) -> Any:
        try:
            return self.client.execute_command(*command)
        except NoScriptError:
            return self.client.execute_command(*by_source(command))

    def _fast(self, batch: list[Command]) -> list[Any]:
        groups = _group(self.client, batch)
        replies: list[Any] = [None] * len(batch)
        errors: dict[int, ResponseError] = {}
        taken: list[tuple[Any, Any, list[int]]] = []
        try:
            for node, indexes in groups.values():
                pool = node.redis_connection.connection_pool
                connection = pool.get_connection()
                taken.append((pool, connection, indexes))
                connection.send_packed_command((pack([batch[at] for at in indexes]),))
            for _pool, connection, indexes in taken:
                for at in indexes:
                    try:
                        replies[at] = connection.read_response()
                    except ResponseError as exc:
                        errors[at] = exc
        except BaseException as exc:
            for _pool, connection, _indexes in taken:
                connection.disconnect()  # replies may be left unread on it
            if isinstance(exc, ConnectionError):
                with suppress(Exception):  # a node may be gone: read the topology again
                    self.client.nodes_manager.initialize()
            raise
        finally:
            for pool, connection, _indexes in taken:
                pool.release(connection)
        if errors:
            unscripted, redirected = _settle(errors)
            for at in unscripted:
                replies[at] = self._slow(by_source(batch[at]))
            for at in redirected:
                replies[at] = self._slow(batch[at])
        return replies


class AsyncClusterRunner:
    """Runs batches on an asyncio ``RedisCluster`` (one per event loop)."""

    def __init__(self, client: AsyncRedisCluster, max_connections: int) -> None:
        self.client: Any = client
        self._slots = asyncio.Semaphore(max_connections)

    async def __call__(self, batch: list[Command]) -> list[Any]:
        async with self._slots:
            if self.client._initialize:  # the slot map is not known yet (or must be read again)
                await self.client.initialize()
            try:
                return await self._fast(batch)
            except _Reroute:
                return [await self._slow(command) for command in batch]

    async def _slow(self, command: Command) -> Any:
        try:
            return await self.client.execute_command(*command)
        except NoScriptError:
            return await self.client.execute_command(*by_source(command))

    async def _fast(self, batch: list[Command]) -> list[Any]:
        groups = _group(self.client, batch)
        replies: list[Any] = [None] * len(batch)
        errors: dict[int, ResponseError] = {}
        taken: list[tuple[Any, Any]] = []
        try:
            for node, indexes in groups.values():
                connection = node.acquire_connection()
                taken.append((node, connection))
                await connection.send_packed_command((pack([batch[at] for at in indexes]),))
            for (_node, connection), (_n, indexes) in zip(taken, groups.values(), strict=True):
                for at in indexes:
                    try:
                        replies[at] = await connection.read_response()
                    except ResponseError as exc:
                        errors[at] = exc
        except BaseException as exc:
            for _node, connection in taken:
                await connection.disconnect()  # replies may be left unread on it
            if isinstance(exc, ConnectionError):
                self.client._initialize = True  # a node may be gone: read the topology again
            raise
        finally:
            for node, connection in taken:
                node.release(connection)
        if errors:
            unscripted, redirected = _settle(errors)
            for at in unscripted:
                replies[at] = await self._slow(by_source(batch[at]))
            for at in redirected:
                replies[at] = await self._slow(batch[at])
        return replies
