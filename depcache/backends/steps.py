"""Multi-step Redis protocols written once, run by a sync or an async runner.

A protocol is a generator that yields batches of commands and receives their replies; each
batch goes out as one non-transactional pipeline (one round trip; on a cluster the nodes
answer in parallel). The same runner serves standalone clients and cluster clients.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from .cluster_client import run_batch
from .redis_client import lua_source

__all__ = ["Command", "Steps", "arun_steps", "eval_command", "run_steps"]

Command = tuple[Any, ...]
Steps = Generator[list[Command], list[Any], Any]


def eval_command(script: str, keys: Sequence[str], *args: Any) -> Command:
    """An EVAL of ``lua/<script>.lua`` (by source: pipelines cannot fall back from EVALSHA)."""
    return ("EVAL", lua_source(script), len(keys), *keys, *args)


def _options(client: Any, command: Command) -> dict[str, Any]:
    if command[0] == "EVAL" and command[2] and isinstance(client, RedisCluster | AsyncRedisCluster):
        # routed by its first key: otherwise a cluster pipeline asks a node for the keys of
        # every EVAL (COMMAND GETKEYS), one blocking round trip each
        return {"target_nodes": client.get_node_from_key(command[3])}
    return {}


def _queue(client: Any, pipe: Any, command: Command) -> None:
    pipe.execute_command(*command, **_options(client, command))


def run_steps(client: Any, steps: Steps) -> Any:
    """Run a protocol on a sync client (``redis.Redis`` or ``RedisCluster``)."""
    try:
        batch = next(steps)
        while True:
            if isinstance(client, RedisCluster):  # bounded when a node hangs: cluster_client
                replies = run_batch(client, [(c, _options(client, c)) for c in batch])
            else:
                pipe = client.pipeline(transaction=False)
                for command in batch:
                    _queue(client, pipe, command)
                replies = pipe.execute()
            batch = steps.send(replies)
    except StopIteration as stop:
        return stop.value


async def arun_steps(client: Any, steps: Steps) -> Any:
    """Run a protocol on an asyncio client."""
    if isinstance(client, AsyncRedisCluster):
        # the slot map must be known before _queue routes an EVAL by key (a no-op once known)
        await client.initialize()
    try:
        batch = next(steps)
        while True:
            pipe = client.pipeline(transaction=False)
            for command in batch:
                _queue(client, pipe, command)
            batch = steps.send(await pipe.execute())
    except StopIteration as stop:
        return stop.value
