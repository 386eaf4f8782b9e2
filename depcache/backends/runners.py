"""Running the storage protocols: one round trip per batch of commands, sync or async.

A protocol is a generator that yields batches of commands and receives their replies
(:data:`Steps`). A *runner* executes one batch: :func:`run_steps` and :func:`arun_steps` drive a
protocol with a runner until it returns. Runners for standalone clients send a batch of one
command directly (the common case, and the cheapest) and longer batches as a pipeline; the
cluster runners are in ``cluster_runner.py``.

Scripts are sent as ``EVALSHA`` (:func:`script`); a server that does not have the script yet
answers ``NOSCRIPT`` and the runner sends it again as ``EVAL`` with its source. In a pipeline,
where a command cannot be retried alone, scripts go by source from the start.

Replies are those of redis-py's ``execute_command`` or raw RESP (the cluster fast path); the
protocols read them with tolerant helpers (:func:`as_int`).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Awaitable, Callable, Generator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .redis_client import QuickCheckout

__all__ = [
    "AsyncRunner",
    "Command",
    "Runner",
    "Steps",
    "arun_steps",
    "as_int",
    "async_standalone_runner",
    "by_source",
    "lua_source",
    "pack",
    "resp",
    "run_one",
    "run_steps",
    "script",
    "standalone_runner",
]

Command = tuple[Any, ...]
Steps = Generator[list[Command], list[Any], Any]
Runner = Callable[[list[Command]], list[Any]]
AsyncRunner = Callable[[list[Command]], Awaitable[list[Any]]]


@cache
def lua_source(name: str) -> str:
    """The text of ``lua/<name>.lua`` (read once), with the files it includes (a line
    ``-- include: _shared.lua``) in place: Redis scripts cannot load code."""
    text = (_LUA / f"{name}.lua").read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith(_INCLUDE):
            lines.append(lua_source(line[len(_INCLUDE) :].strip().removesuffix(".lua")))
        else:
            lines.append(line)
    return "".join(lines)


_INCLUDE = "-- include: "
#: the scripts, installed with the package (package data): read as plain files, so that loading
#: one imports nothing (a crafted entry must not be able to make the process import a module)
_LUA = Path(__file__).with_name("lua")


@cache
def _sha(name: str) -> str:
    sha = hashlib.sha1(lua_source(name).encode("utf-8")).hexdigest()
    _SOURCES[sha] = lua_source(name)
    return sha


_SOURCES: dict[str, str] = {}


def script(name: str, keys: Sequence[str], *args: Any) -> Command:
    """``EVALSHA`` of ``lua/<name>.lua`` with ``keys`` and ``args``."""
    return ("EVALSHA", _sha(name), len(keys), *keys, *args)


def by_source(command: Command) -> Command:
    """``command``, with an ``EVALSHA`` of ours turned into an ``EVAL`` of the source."""
    if command[0] == "EVALSHA":
        return ("EVAL", _SOURCES[command[1]], *command[2:])
    return command


def resp(*parts: bytes) -> bytes:
    """``parts`` as a RESP command (what a client writes to the socket)."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def as_int(reply: Any) -> int:
    """An integer reply, whichever client read it."""
    return int(reply)


def run_steps(run: Runner, steps: Steps) -> Any:
    """Drive ``steps`` to its return value, each batch through ``run``."""
    try:
        batch = next(steps)
        while True:
            batch = steps.send(run(batch))
    except StopIteration as stop:
        return stop.value


async def arun_steps(run: AsyncRunner, steps: Steps) -> Any:
    """Drive ``steps`` to its return value, each batch awaited through ``run``."""
    try:
        batch = next(steps)
        while True:
            batch = steps.send(await run(batch))
    except StopIteration as stop:
        return stop.value


def run_one(client: Any, command: Command) -> Any:
    """Run one command on a blocking client (standalone or cluster), scripts by SHA first."""
    try:
        return client.execute_command(*command)
    except NoScriptError:
        return client.execute_command(*by_source(command))


def _bytes(part: Any) -> bytes:
    if isinstance(part, bytes):
        return part
    return str(part).encode()


def _python_pack(commands: list[Command]) -> bytes:
    out = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for part in command:
            data = _bytes(part)
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _hiredis_packer() -> Callable[[Command], bytes] | None:
    try:
        return importlib.import_module("hiredis").pack_command  # type: ignore[no-any-return]
    except (ImportError, AttributeError):  # pragma: no cover - the hiredis extra is optional
        return None


_pack_command = _hiredis_packer()


def pack(commands: list[Command]) -> bytes:
    """``commands`` as RESP, as one write (redis-py's packer encodes each argument through
    several layers: measured, a tenth of a cluster hit, more for a store's many arguments).
    With hiredis installed its C packer does it (about twice as fast on an invalidation's
    arguments); arguments are ``bytes``, ``str`` (UTF-8) and ``int``."""
    if _pack_command is not None:
        try:
            return b"".join([_pack_command(tuple(command)) for command in commands])
        except (TypeError, UnicodeError):  # hiredis refuses a type: the Python packer decides
            pass
    return _python_pack(commands)


def _scripted(errors: dict[int, ResponseError]) -> list[int]:
    """The commands that failed only because the server lacks their script; any other error is
    raised."""
    missing = []
    for at, error in errors.items():
        if not isinstance(error, NoScriptError):
            raise error
        missing.append(at)
    return missing


def _pipelined(client: Any, batch: list[Command]) -> list[Any]:
    """``batch`` through redis-py (which reconnects on a broken connection)."""
    if len(batch) == 1:
        return [run_one(client, batch[0])]
    pipe = client.pipeline(transaction=False)
    for command in batch:
        pipe.execute_command(*by_source(command))
    return list(pipe.execute())


def standalone_runner(client: Any) -> Runner:
    """The runner of a ``redis.Redis`` client: a batch is written to a pooled connection as one
    write and its replies read back (raw), as redis-py's pipeline does, without its per-command
    machinery. A broken connection falls back to redis-py, which reconnects; a timeout is not
    retried."""
    pool = client.connection_pool
    # depcache's own pools: connections taken and returned without redis-py's per-checkout
    # bookkeeping when their last user was this runner (QuickCheckout: ~9 us a batch -> ~1.6)
    checkout = QuickCheckout(pool)

    def run(batch: list[Command]) -> list[Any]:
        if client.connection is not None:  # a single-connection client: its own path
            return _pipelined(client, batch)
        replies: list[Any] = [None] * len(batch)
        errors: dict[int, ResponseError] = {}
        broken = False
        connection, quick = checkout.acquire()
        clean = False  # every reply read: nothing is left on the connection
        try:
            connection.send_packed_command((pack(batch),))
            for at in range(len(batch)):
                try:
                    replies[at] = connection.read_response()
                except ResponseError as exc:
                    errors[at] = exc
            clean = True
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if isinstance(exc, RedisTimeoutError):
                raise
            broken = True
        finally:
            # before any other command: the pool may hold one connection only; one cut short
            # (a broken connection, a timeout, an interrupt) is dropped
            checkout.finish(connection, quick=quick, clean=clean)
        if broken:
            return _pipelined(client, batch)
        for at in _scripted(errors):
            replies[at] = run_one(client, by_source(batch[at]))
        return replies

    return run


def async_standalone_runner(client: Any) -> AsyncRunner:
    """The runner of a ``redis.asyncio.Redis`` client (see :func:`standalone_runner`)."""
    pool = client.connection_pool

    async def pipelined(batch: list[Command]) -> list[Any]:
        if len(batch) == 1:
            command = batch[0]
            try:
                return [await client.execute_command(*command)]
            except NoScriptError:
                return [await client.execute_command(*by_source(command))]
        pipe = client.pipeline(transaction=False)
        for command in batch:
            pipe.execute_command(*by_source(command))
        return list(await pipe.execute())

    async def run(batch: list[Command]) -> list[Any]:
        if client.connection is not None:
            return await pipelined(batch)
        replies: list[Any] = [None] * len(batch)
        errors: dict[int, ResponseError] = {}
        broken = False
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command((pack(batch),))
            for at in range(len(batch)):
                try:
                    replies[at] = await connection.read_response()
                except ResponseError as exc:
                    errors[at] = exc
        except (RedisConnectionError, RedisTimeoutError) as exc:
            await connection.disconnect()
            if isinstance(exc, RedisTimeoutError):
                raise
            broken = True
        finally:
            await pool.release(connection)
        if broken:
            return await pipelined(batch)
        for at in _scripted(errors):
            replies[at] = (await pipelined([by_source(batch[at])]))[0]
        return replies

    return run
