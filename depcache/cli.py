"""The ``depcache`` command: watch, invalidate and inspect caches from a shell.

    depcache watch [--url URL] [--cluster] [--prefix P] [--json] [--count N]
    depcache invalidate DEP [DEP ...] [--setup MODULES | --url URL [--cluster] --prefix P]
    depcache stats [--url URL] [--cluster] [--prefix P] [--json] [--progress N]

``--url`` defaults to ``REDIS_URL`` (else ``redis://localhost:6379/0``), ``--prefix`` to
``DEP_CACHE_PREFIX`` (else ``cache``). ``invalidate`` with ``--setup`` (default
``DEPCACHE_SETUP``, as the worker reads it) imports those modules and invalidates on every cache
manager they register, wherever each lives; without it, on the one prefix. Either way, a prefix
that no manager ever used (no entry, no epoch: a typo?) is reported on
stderr with the prefixes that are in use there. ``stats`` names the prefix it reads, and shows
its progress on stderr every ``--progress`` keys. Exit status: 0 on success, 1 when Redis (or a
broker) fails, 2 for bad arguments.

Other installed packages add subcommands through the entry-point group ``depcache.commands``:
each entry point names a function ``register(commands)`` that adds parsers to the
``argparse`` sub-parsers ``commands``, each with ``set_defaults(run=handler)``; a handler
returns the exit status and raises :class:`~depcache.errors.ConfigError` for bad arguments and
:class:`~depcache.errors.BackendError` when a server fails. ``depcache_celery`` adds
``depcache emit`` and ``depcache dead-letters``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import entry_points
from typing import Any, cast

import redis
from redis.cluster import RedisCluster

from ._json import strict_loads
from .announce import channel_for, parse_announcement
from .backends.cluster_client import create_cluster_client
from .backends.redis_client import backend_errors, create_sync_client
from .config import RedisConfig
from .errors import BackendError, ConfigError, InvalidationError
from .manager import CacheManager
from .registry import invalidate, registered_managers
from .terminal import printable

__all__ = ["main"]


def _config(args: argparse.Namespace) -> RedisConfig:
    url = args.url or os.environ.get("REDIS_URL") or "redis://localhost:6379/0"
    return RedisConfig(url=url, prefix=args.prefix, cluster=args.cluster or None)


def _client(config: RedisConfig) -> redis.Redis | RedisCluster:
    if config.cluster:
        return create_cluster_client(config)
    return create_sync_client(config)


def _as_json(message: bytes) -> str:
    """One JSON line: the message as parsed, re-encoded with every non-ASCII and control
    character escaped; or, when it is not JSON, an object saying so."""
    try:
        value = strict_loads(message)
    except ValueError as exc:
        value = {"unreadable": message.decode("utf-8", "replace"), "error": str(exc)}
    # json.dumps escapes control characters and (ensure_ascii) everything above ASCII; DEL is
    # ASCII but a control character, and only ever inside a string here
    return json.dumps(value, ensure_ascii=True).replace("\x7f", "\\u007f")


def _describe(message: bytes, as_json: bool) -> str:
    """One line for a message, with everything it carries escaped for the terminal."""
    if as_json:
        return _as_json(message)
    try:
        parsed = parse_announcement(message)
    except ValueError as exc:
        return f"(unreadable message: {printable(str(exc))}) {message[:200]!r}"
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(parsed.ts))
    except (OverflowError, OSError, ValueError):  # a time no calendar shows
        stamp = f"ts={parsed.ts!r}"
    deps = ", ".join(printable(d) for d in parsed.dependencies)
    return (
        f"{stamp}  {printable(parsed.manager)}  invalidated {deps}  "
        f"removed={parsed.removed}  origin={printable(parsed.origin)}"
    )


def _messages(config: RedisConfig, pattern: str) -> Iterator[bytes]:
    client = _client(config)
    with backend_errors(config):
        # typed Any: redis-py < 8 leaves RedisCluster.pubsub untyped, 8.x types it
        pubsub = cast(Any, client).pubsub()
        pubsub.psubscribe(pattern)
        while True:
            message = pubsub.get_message(timeout=1.0)
            if not message:
                continue
            if message["type"] == "psubscribe":
                # on stderr, so that --json output stays pure JSON lines
                print(
                    f"watching {pattern} on {config.safe_url} (Ctrl-C to stop)",
                    file=sys.stderr,
                    flush=True,
                )
            elif message["type"] == "pmessage":
                yield message["data"]


def cmd_watch(args: argparse.Namespace) -> int:
    """Print the live invalidation stream until interrupted (or ``--count`` messages)."""
    config = _config(args)
    pattern = channel_for(args.prefix) if args.prefix else channel_for("*")
    for seen, data in enumerate(_messages(config, pattern), start=1):
        print(_describe(data, args.json), flush=True)
        if args.count and seen >= args.count:
            break
    return 0


def _setup(value: str | None) -> tuple[str, ...]:
    raw = os.environ.get("DEPCACHE_SETUP", "") if value is None else value
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _import_setup(modules: Iterable[str]) -> None:
    """Import the setup modules (from the working directory too, as the worker does)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"setup module {module!r} cannot be imported: {exc}") from exc


def _in_use(config: RedisConfig) -> bool:
    """Whether anything lives under the prefix: its epoch (a manager looked something up there,
    or invalidated) or an entry."""
    client = _client(config)
    with backend_errors(config):
        if client.exists(f"{config.prefix}:epoch"):
            return True
        return any(True for _ in client.scan_iter(match=f"{config.prefix}:k:*", count=1000))


def known_prefixes(config: RedisConfig, limit: int = 20) -> list[str]:
    """Prefixes in use on the server of ``config``: those with an epoch (a manager used them),
    at most ``limit``, sorted."""
    client = _client(config)
    found: set[str] = set()
    with backend_errors(config):
        for raw in client.scan_iter(match="*:epoch", count=1000):
            key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            found.add(key[: -len(":epoch")])
            if len(found) >= limit:
                break
    return sorted(found)


def _report_unused(config: RedisConfig) -> None:
    others = [p for p in known_prefixes(config) if p != config.prefix]
    print(
        f"depcache: prefix {config.prefix!r} on {config.safe_url} holds no entry and no epoch: "
        "no cache manager seems to use it. Prefixes in use there: "
        f"{', '.join(map(repr, others)) or 'none'} (pass --prefix, or --setup with the modules "
        "that create your managers)",
        file=sys.stderr,
    )


def cmd_invalidate(args: argparse.Namespace) -> int:
    """Invalidate dependencies on every manager of the setup modules, or on one prefix, and
    print how many entries went where."""
    modules = _setup(args.setup) if args.prefix is None and args.url is None else ()
    if args.setup and (args.prefix is not None or args.url is not None):
        raise ConfigError("--setup invalidates on your managers: give it, or --url/--prefix")
    if not modules:
        return _invalidate_prefix(args)
    _import_setup(modules)
    managers = registered_managers()
    if not managers:
        raise ConfigError(f"the setup modules {', '.join(modules)} register no cache manager")
    unused = {
        name: not _in_use(m.config)
        for name, m in managers.items()
        if isinstance(m.config, RedisConfig)
    }
    try:
        report = invalidate(*args.dependencies)
    except InvalidationError as exc:
        report = exc.report
    for name, manager in sorted(managers.items()):
        where = f"prefix {manager.prefix!r} on {_where(manager.config)}"
        if name in report.errors:
            print(f"manager {name!r} ({where}) failed: {report.errors[name]}", file=sys.stderr)
            continue
        print(f"{report.removed.get(name, 0)} entries removed from manager {name!r} ({where})")
        if not report.removed.get(name) and unused.get(name):
            assert isinstance(manager.config, RedisConfig)
            _report_unused(manager.config)
    return 1 if report.errors else 0


def _where(config: object) -> str:
    return str(getattr(config, "safe_url", "memory"))


def _invalidate_prefix(args: argparse.Namespace) -> int:
    config = _config(args)
    unused = not _in_use(config)
    manager = CacheManager(config)
    try:
        removed = manager.invalidate_dependencies(*args.dependencies)
    finally:
        manager.close()
    print(f"{removed} entries removed from {config.prefix!r} on {config.safe_url}")
    if not removed and unused:
        _report_unused(config)
    return 0


_MEMORY_BATCH = 1000


def _is_index(key: bytes, prefix: str) -> bool:
    """Whether ``key`` (read by SCAN under ``prefix``) is a dependency's index."""
    return key.startswith(f"{prefix}:d:".encode()) and key.endswith(b":i")


def _stats(config: RedisConfig, progress: int = 0) -> dict[str, Any]:
    client = _client(config)
    prefix = config.prefix
    counts = {"entries": 0, "dependency_indexes": 0, "invalidation_markers": 0, "other": 0}
    memory = 0
    scanned = 0
    batch: list[bytes] = []

    def weigh() -> int:
        """The batch's bytes; counts the markers of the indexes in it (a dependency's marker is
        its index's one member scored below 0: backends/protocols/layout.py)."""
        indexes = [key for key in batch if _is_index(key, prefix)]
        pipe = client.pipeline(transaction=False) if not config.cluster else None
        if pipe is None:  # a cluster routes each key to its node
            for key in indexes:
                with contextlib.suppress(redis.ResponseError):  # not a sorted set: no marker
                    counts["invalidation_markers"] += int(client.zcount(key, "-inf", "(0"))
            return sum(int(client.memory_usage(key) or 0) for key in batch)
        for key in batch:
            pipe.memory_usage(key)
        for key in indexes:
            pipe.zcount(key, "-inf", "(0")
        replies = pipe.execute(raise_on_error=False)
        counts["invalidation_markers"] += sum(
            n
            for n in replies[len(batch) :]
            if isinstance(n, int)  # not a sorted set: none
        )
        return sum(
            int(size or 0) for size in replies[: len(batch)] if not isinstance(size, Exception)
        )

    with backend_errors(config):
        for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
            key = raw.decode("utf-8", "replace")
            rest = key[len(prefix) + 1 :]
            if rest.startswith("k:"):
                counts["entries"] += 1
            elif _is_index(raw, prefix):
                counts["dependency_indexes"] += 1
            else:
                counts["other"] += 1
            batch.append(raw)
            if len(batch) >= _MEMORY_BATCH:
                memory += weigh()
                batch.clear()
            scanned += 1
            if progress and scanned % progress == 0:
                print(f"... {scanned:,} keys of {prefix!r} read", file=sys.stderr, flush=True)
        if batch:
            memory += weigh()
    return {"prefix": prefix, "url": config.safe_url, **counts, "memory_bytes": memory}


def cmd_stats(args: argparse.Namespace) -> int:
    """Print what a prefix holds: entries, dependency indexes, markers, memory."""
    config = _config(args)
    source = (
        "--prefix"
        if args.prefix
        else ("$DEP_CACHE_PREFIX" if os.environ.get("DEP_CACHE_PREFIX") else "the default")
    )
    print(
        f"reading prefix {config.prefix!r} ({source}) on {config.safe_url}",
        file=sys.stderr,
        flush=True,
    )
    stats = _stats(config, args.progress)
    if args.json:
        print(json.dumps(stats))
    else:
        width = max(len(k) for k in stats)
        for name, value in stats.items():
            print(f"{name.ljust(width)}  {value}")
    if not any(stats[k] for k in ("entries", "dependency_indexes", "invalidation_markers")):
        _report_unused(config)
    return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="Redis URL (default: $REDIS_URL or redis://localhost:6379/0)")
    common.add_argument("--cluster", action="store_true", help="the URL names a cluster node")
    parser = argparse.ArgumentParser(prog="depcache", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    watch = commands.add_parser("watch", parents=[common], help="print live invalidations")
    watch.add_argument("--prefix", help="one manager's prefix (default: every prefix)")
    watch.add_argument("--json", action="store_true", help="print each message as a JSON line")
    watch.add_argument("--count", type=int, default=0, help="stop after N messages")
    watch.set_defaults(run=cmd_watch)

    inval = commands.add_parser("invalidate", parents=[common], help="invalidate dependencies")
    inval.add_argument("dependencies", nargs="+", metavar="DEP")
    inval.add_argument("--prefix", help="the manager's prefix (default: $DEP_CACHE_PREFIX)")
    inval.add_argument(
        "--setup",
        metavar="MODULES",
        help="comma-separated modules creating your managers: invalidate on every one of them "
        "(default: $DEPCACHE_SETUP, as the worker reads it)",
    )
    inval.set_defaults(run=cmd_invalidate)

    stats = commands.add_parser("stats", parents=[common], help="show what a prefix holds")
    stats.add_argument("--prefix", help="the manager's prefix (default: $DEP_CACHE_PREFIX)")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.add_argument(
        "--progress",
        type=int,
        default=10_000,
        metavar="N",
        help="report progress on stderr every N keys (default 10000, 0: never)",
    )
    stats.set_defaults(run=cmd_stats)
    _add_plugins(commands)
    return parser


def _add_plugins(commands: Any) -> None:
    """Let installed packages add subcommands (the ``depcache.commands`` entry points)."""
    for point in entry_points(group="depcache.commands"):
        try:
            register = point.load()
        except ImportError:  # the package's optional dependencies are not installed
            continue
        register(commands)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except ConfigError as exc:
        print(f"depcache: {exc}", file=sys.stderr)
        return 2
    except BackendError as exc:
        print(f"depcache: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
