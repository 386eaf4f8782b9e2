"""The ``depcache`` command: watch, invalidate and inspect caches from a shell.

    depcache watch [--url URL] [--cluster] [--prefix P] [--json] [--count N]
    depcache invalidate DEP [DEP ...] [--url URL] [--cluster] [--prefix P]
    depcache stats [--url URL] [--cluster] [--prefix P] [--json]

``--url`` defaults to ``REDIS_URL`` (else ``redis://localhost:6379/0``), ``--prefix`` to
``DEP_CACHE_PREFIX`` (else ``cache``). Exit status: 0 on success, 1 when Redis (or a broker)
fails, 2 for bad arguments.

Other installed packages add subcommands through the entry-point group ``depcache.commands``:
each entry point names a function ``register(commands)`` that adds parsers to the
``argparse`` sub-parsers ``commands``, each with ``set_defaults(run=handler)``; a handler
returns the exit status and raises :class:`~depcache.errors.ConfigError` for bad arguments and
:class:`~depcache.errors.BackendError` when a server fails. ``depcache_celery`` adds
``depcache emit`` and ``depcache dead-letters``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from typing import Any, cast

import redis
from redis.cluster import RedisCluster

from ._json import strict_loads
from .announce import channel_for, parse_message
from .backends.cluster_client import create_cluster_client
from .backends.redis_client import backend_errors, create_sync_client
from .config import RedisConfig
from .errors import BackendError, ConfigError
from .manager import CacheManager
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
        parsed = parse_message(message)
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


def cmd_invalidate(args: argparse.Namespace) -> int:
    """Invalidate dependencies on one prefix and print how many entries went."""
    config = _config(args)
    manager = CacheManager(config)
    removed = manager.invalidate_dependencies(*args.dependencies)
    print(f"{removed} entries removed from {config.prefix!r} on {config.safe_url}")
    manager.close()
    return 0


def _stats(config: RedisConfig) -> dict[str, Any]:
    client = _client(config)
    prefix = config.prefix
    counts = {"entries": 0, "dependency_indexes": 0, "invalidation_markers": 0, "other": 0}
    memory = 0
    with backend_errors(config):
        for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
            key = raw.decode("utf-8", "replace")
            rest = key[len(prefix) + 1 :]
            if rest.startswith("k:"):
                counts["entries"] += 1
            elif rest.startswith("d:") and rest.endswith(":i"):
                counts["dependency_indexes"] += 1
            elif rest.startswith("d:") and rest.endswith(":v"):
                counts["invalidation_markers"] += 1
            else:
                counts["other"] += 1
            memory += int(client.memory_usage(raw) or 0)
    return {"prefix": prefix, "url": config.safe_url, **counts, "memory_bytes": memory}


def cmd_stats(args: argparse.Namespace) -> int:
    """Print what a prefix holds: entries, dependency indexes, markers, memory."""
    stats = _stats(_config(args))
    if args.json:
        print(json.dumps(stats))
    else:
        width = max(len(k) for k in stats)
        for name, value in stats.items():
            print(f"{name.ljust(width)}  {value}")
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
    inval.set_defaults(run=cmd_invalidate)

    stats = commands.add_parser("stats", parents=[common], help="show what a prefix holds")
    stats.add_argument("--prefix", help="the manager's prefix (default: $DEP_CACHE_PREFIX)")
    stats.add_argument("--json", action="store_true", help="print JSON")
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
