"""``depcache emit`` and ``depcache dead-letters``: the bus from a shell.

    depcache emit EVENT [DATA_JSON] [--id ID] [--dependency DEP ...] [--broker URL] [--exchange X]
    depcache dead-letters list [--limit N] [--json] [--broker URL] [--queue Q]
    depcache dead-letters replay [--limit N] [--broker URL] [--queue Q] [--exchange X]
    depcache dead-letters purge [--broker URL] [--queue Q]
    depcache check [--setup MODULES] [--timeout S] [--broker URL] [--exchange X] [--json]

``--broker`` defaults to ``CELERY_BROKER_URL`` (else ``amqp://guest:guest@localhost:5672//``),
``--exchange`` and ``--queue`` to the ``DEPCACHE_EXCHANGE`` and ``DEPCACHE_DEAD_LETTER_QUEUE``
settings (else ``depcache.events`` and ``depcache.events.dead``).

- ``emit`` publishes one event, as :func:`depcache_celery.emit` does (publisher confirms).
- ``dead-letters list`` shows up to ``--limit`` dead letters (kind, reason, routing key, body)
  and leaves them in the queue (they are returned unacknowledged when the command exits).
- ``dead-letters replay`` republishes up to ``--limit`` of them and removes each once the broker
  confirmed its copy: a ``malformed`` message goes back to the exchange with its routing key and
  original body (after you fixed its handler, say); an ``expired`` share goes as an event
  ``depcache.replay`` carrying its dependencies (invalidated on every manager: harmless where they
  were already applied). A letter that cannot be replayed stays in the queue and is reported.
- ``dead-letters purge`` empties the queue and prints how many letters went.
- ``check`` is the canary (:mod:`depcache_celery.canary`): it imports the setup modules
  (``--setup``, default ``DEPCACHE_SETUP``, as the worker does), writes a probe entry on every
  manager they register, emits a probe event and waits up to ``--timeout`` seconds (default
  30) for the worker to invalidate it everywhere. It prints the latency per manager and exits
  0 when every one was reached, 1 when one was missed (or the broker failed), 2 for bad
  arguments: a healthcheck.

Registered on the ``depcache`` command through the ``depcache.commands`` entry point.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery
from kombu import Connection, Exchange, Queue
from kombu.message import Message
from kombu.transport import resolve_transport
from kombu.utils.imports import symbol_by_name

import depcache
from depcache.config import mask_url

from . import canary
from .producer.emit import EmitError, build_event, emit
from .settings import DEFAULT_BROKER_URL, Settings
from .worker.deadletter import dead_letter_queue

__all__ = ["register"]

DEFAULT_BROKER = DEFAULT_BROKER_URL
REPLAY_EVENT = "depcache.replay"


def _broker(args: argparse.Namespace) -> str:
    """The broker URL of the options or environment; ConfigError when kombu has no transport
    for its scheme."""
    url: str = args.broker or os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER
    source = "--broker" if args.broker else "CELERY_BROKER_URL"
    if args.broker or os.environ.get("CELERY_BROKER_URL"):
        check_broker_url(url, source)
    return url


def check_broker_url(url: str, source: str) -> None:
    """Raise :class:`depcache.ConfigError` naming ``source`` when ``url`` is not a broker URL
    kombu can use (an unknown scheme, or one whose client library is not installed)."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    safe = mask_url(url)
    if not scheme:
        raise depcache.ConfigError(f"{source}: {safe!r} is not a URL like amqp://host//")
    try:
        transport = resolve_transport(scheme.split("+", 1)[0])
        if isinstance(transport, str):
            symbol_by_name(transport)
    except KeyError:
        raise depcache.ConfigError(
            f"{source}: {safe!r} names no broker kombu knows ({scheme}://); use amqp:// "
            "(RabbitMQ) or redis://"
        ) from None
    except ImportError as exc:
        raise depcache.ConfigError(
            f"{source}: the {scheme}:// transport needs a library that is not installed: {exc}"
        ) from None


def _conf(args: argparse.Namespace) -> dict[str, Any]:
    """The ``depcache_*`` settings the options give (the environment fills the others)."""
    conf: dict[str, Any] = {}
    if getattr(args, "exchange", None):
        conf["depcache_exchange"] = args.exchange
    if getattr(args, "queue", None):
        conf["depcache_dead_letter_queue"] = args.queue
    return conf


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_conf(_conf(args))


def _safe(url: str) -> str:
    return mask_url(url)


@contextmanager
def _connection(url: str) -> Iterator[Connection]:
    conn = Connection(url, transport_options={"confirm_publish": True}, connect_timeout=5)
    try:
        conn.ensure_connection(max_retries=2, interval_start=0, interval_step=1)
    except Exception as exc:
        conn.release()
        raise depcache.BackendError(f"cannot reach the broker at {_safe(url)}: {exc}") from exc
    try:
        yield conn
    finally:
        conn.release()


# -- emit ------------------------------------------------------------------------------------------
def cmd_emit(args: argparse.Namespace) -> int:
    """Publish one event to the bus."""
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        raise depcache.ConfigError(f"DATA is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise depcache.ConfigError(f"DATA must be a JSON object, got {args.data!r}")
    settings = _settings(args)
    url = _broker(args)
    app = Celery("depcache-cli", broker=url, set_as_current=False)  # holds the settings
    app.conf.update(_conf(args))
    try:
        event_id = emit(
            args.event,
            data,
            id=args.id,
            dependencies=args.dependency or None,
            app=app,
            broker_url=url,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        )
    except (TypeError, ValueError) as exc:  # bad input, refused before anything is sent
        raise depcache.ConfigError(str(exc)) from None
    except EmitError as exc:
        raise depcache.BackendError(str(exc)) from exc
    print(
        f"sent event {args.event!r} (id {event_id}) to exchange {settings.exchange!r} "
        f"on {_safe(url)}"
    )
    return 0


# -- dead letters ----------------------------------------------------------------------------------
def _existing_queue(conn: Connection, queue_name: str, url: str) -> Queue:
    """The dead-letter queue, bound to the connection's channel; declared passively, so a queue
    that does not exist is an error naming it, never created. (On Redis, where an empty queue
    does not exist, a missing one reads as empty.)"""
    queue = dead_letter_queue(queue_name)(conn.default_channel)
    if conn.transport.driver_type == "amqp":
        try:
            queue.queue_declare(passive=True)
        except conn.channel_errors as exc:
            raise depcache.ConfigError(
                f"no queue {queue_name!r} on {_safe(url)} ({exc}): name the dead-letter queue "
                "with --queue or DEPCACHE_DEAD_LETTER_QUEUE (the worker declares it when it "
                "starts)"
            ) from None
    return queue


def _letters(
    conn: Connection, queue_name: str, limit: int, url: str
) -> Iterator[tuple[Message, Any]]:
    """Up to ``limit`` messages of the dead-letter queue, unacknowledged, with their parsed
    letter (None when it is not a JSON object)."""
    queue = _existing_queue(conn, queue_name, url)
    for _ in range(limit):
        message = queue.get(no_ack=False, accept=["json", "application/json"])
        if message is None:
            return
        try:
            letter = json.loads(message.body or "")
        except (TypeError, ValueError):
            letter = None
        yield message, letter if isinstance(letter, dict) else None


def _describe(letter: dict[str, Any] | None, raw: Any) -> str:
    if letter is None:
        return f"(not a dead letter of depcache: {str(raw)[:200]!r})"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(letter.get("at") or 0)))
    body = letter.get("body")
    if body is None and "body_base64" in letter:
        body = f"<{len(base64.b64decode(letter['body_base64']))} bytes, not UTF-8>"
    if body is None and letter.get("dependencies"):
        body = f"dependencies {letter['dependencies']} for managers {letter.get('managers')}"
    return (
        f"{stamp}  {letter.get('kind')}  key={letter.get('routing_key')}  "
        f"reason: {letter.get('reason')}\n    {str(body)[:500]}"
    )


def cmd_list(args: argparse.Namespace) -> int:
    """Show dead letters, leaving them in the queue."""
    settings = _settings(args)
    url = _broker(args)
    count = 0
    with _connection(url) as conn:
        for message, letter in _letters(conn, settings.dead_letter_queue, args.limit, url):
            count += 1
            if args.json:
                print(json.dumps(letter if letter is not None else {"raw": str(message.body)}))
            else:
                print(_describe(letter, message.body))
        # closing the connection returns the unacknowledged letters to the queue
    if not args.json:
        print(f"{count} dead letter(s) shown from {settings.dead_letter_queue!r} on {_safe(url)}")
    return 0


def _replay_one(conn: Connection, settings: Settings, letter: dict[str, Any]) -> str:
    """Republish one letter; returns what was sent. Raises ValueError if it cannot be."""
    kind = letter.get("kind")
    producer = conn.Producer()
    if kind == "expired":
        deps = letter.get("dependencies")
        event = build_event(REPLAY_EVENT, {"managers": letter.get("managers")}, dependencies=deps)
        routing_key, body, exchange_name = REPLAY_EVENT, event.body, settings.exchange
    elif "body" in letter or "body_base64" in letter:
        raw: bytes = (
            letter["body"].encode("utf-8")
            if "body" in letter
            else base64.b64decode(letter["body_base64"])
        )
        routing_key = letter.get("routing_key") or ""
        exchange_name = letter.get("exchange") or settings.exchange
        body = raw
    else:
        raise ValueError("the letter holds neither a body nor dependencies")
    exchange = Exchange(exchange_name, type="topic", durable=True, auto_delete=False)
    producer.publish(
        body,
        exchange=exchange,
        routing_key=routing_key,
        content_type=letter.get("content_type") or "application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        declare=[exchange],
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
    )
    return f"{kind} -> exchange {exchange_name!r}, key {routing_key!r}"


def cmd_replay(args: argparse.Namespace) -> int:
    """Republish dead letters (see the module's docstring)."""
    settings = _settings(args)
    url = _broker(args)
    replayed = kept = 0
    with _connection(url) as conn:
        for message, letter in _letters(conn, settings.dead_letter_queue, args.limit, url):
            try:
                if letter is None:
                    raise ValueError("not a JSON object")
                what = _replay_one(conn, settings, letter)
            except (ValueError, TypeError, KeyError) as exc:
                kept += 1
                print(f"kept (cannot replay: {exc}): {_describe(letter, message.body)}")
                continue
            message.ack()
            replayed += 1
            print(f"replayed {what}")
    print(f"{replayed} replayed, {kept} kept in {settings.dead_letter_queue!r} on {_safe(url)}")
    return 0 if not kept else 1


def cmd_purge(args: argparse.Namespace) -> int:
    """Empty the dead-letter queue."""
    settings = _settings(args)
    url = _broker(args)
    with _connection(url) as conn:
        queue = _existing_queue(conn, settings.dead_letter_queue, url)
        count = queue.purge() or 0
    print(f"{count} dead letter(s) purged from {settings.dead_letter_queue!r} on {_safe(url)}")
    return 0


# -- check -----------------------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    """The canary (see the module's docstring)."""
    modules = _setup_modules(args.setup)
    if not modules:
        raise depcache.ConfigError(
            "depcache check needs the worker's setup modules: --setup or DEPCACHE_SETUP"
        )
    _import_setup(modules)
    managers = depcache.registered_managers()
    if not managers:
        raise depcache.ConfigError(f"the setup modules {', '.join(modules)} register no manager")
    url = _broker(args)
    settings = _settings(args)
    app = Celery("depcache-check", broker=url, set_as_current=False)
    app.conf.update(_conf(args))

    def send(probe_id: str, dependencies: list[str]) -> None:
        try:
            emit(
                args.event,
                {},
                id=probe_id,
                dependencies=dependencies,
                app=app,
                broker_url=url,
                retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
            )
        except EmitError as exc:
            raise depcache.BackendError(str(exc)) from exc

    report = canary.check(managers, send, timeout=args.timeout)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "probe_id": report.probe_id,
                    "targets": {
                        t.manager: {"latency_ms": _ms(t.latency), "error": t.error, "at": t.where}
                        for t in report.targets
                    },
                }
            )
        )
    else:
        width = max(len(t.manager) for t in report.targets)
        for target in report.targets:
            state = f"ok  {_ms(target.latency):8.1f} ms" if target.ok else "MISSED"
            detail = f"  {target.error}" if target.error else ""
            print(f"{target.manager.ljust(width)}  {state}  {target.where}{detail}")
        missed = [t.manager for t in report.targets if not t.ok]
        print(
            f"probe {report.probe_id} via exchange {settings.exchange!r} on {_safe(url)}: "
            + (f"missed on {', '.join(missed)}" if missed else "every manager reached")
        )
    return 0 if report.ok else 1


def _ms(seconds: float | None) -> float:
    return round(seconds * 1000, 1) if seconds is not None else float("nan")


def _setup_modules(value: str | None) -> tuple[str, ...]:
    raw = os.environ.get("DEPCACHE_SETUP", "") if value is None else value
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _import_setup(modules: tuple[str, ...]) -> None:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise depcache.ConfigError(
                f"setup module {module!r} cannot be imported: {exc}"
            ) from exc


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds, got {text}")
    return value


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number above 0 (also used by ``depcache cdc``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def register(commands: Any) -> None:
    """Add ``emit`` and ``dead-letters`` to the ``depcache`` command's sub-parsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--broker", help=f"broker URL (default: $CELERY_BROKER_URL or {DEFAULT_BROKER})"
    )

    emit_parser = commands.add_parser("emit", parents=[common], help="publish a domain event")
    emit_parser.add_argument("event", metavar="EVENT", help="the event name (routing key)")
    emit_parser.add_argument("data", metavar="DATA", nargs="?", default="{}", help="JSON object")
    emit_parser.add_argument("--id", help="the event's id (default: a new UUID)")
    emit_parser.add_argument(
        "--dependency", action="append", metavar="DEP", help="also invalidate DEP (repeatable)"
    )
    emit_parser.add_argument("--exchange", help="the topic exchange (default: $DEPCACHE_EXCHANGE)")
    emit_parser.set_defaults(run=cmd_emit)

    letters = commands.add_parser("dead-letters", help="inspect, replay or purge dead letters")
    actions = letters.add_subparsers(dest="action", required=True)
    queue_help = "the dead-letter queue (default: $DEPCACHE_DEAD_LETTER_QUEUE)"

    show = actions.add_parser("list", parents=[common], help="show dead letters, keep them")
    show.add_argument("--queue", help=queue_help)
    show.add_argument("--limit", type=positive_int, default=100, help="at most N (default 100)")
    show.add_argument("--json", action="store_true", help="print each letter as a JSON line")
    show.set_defaults(run=cmd_list)

    replay = actions.add_parser("replay", parents=[common], help="republish dead letters")
    replay.add_argument("--queue", help=queue_help)
    replay.add_argument("--limit", type=positive_int, default=1000, help="at most N (default 1000)")
    replay.add_argument(
        "--exchange", help="exchange for expired shares (default: $DEPCACHE_EXCHANGE)"
    )
    replay.set_defaults(run=cmd_replay)

    purge = actions.add_parser("purge", parents=[common], help="delete every dead letter")
    purge.add_argument("--queue", help=queue_help)
    purge.set_defaults(run=cmd_purge)

    probe = commands.add_parser(
        "check", parents=[common], help="send a probe through the worker to every manager"
    )
    probe.add_argument(
        "--setup",
        metavar="MODULES",
        help="comma-separated modules creating the managers (default: $DEPCACHE_SETUP)",
    )
    probe.add_argument(
        "--timeout",
        type=_timeout,
        default=canary.DEFAULT_TIMEOUT,
        help=f"seconds to wait for every manager (default {canary.DEFAULT_TIMEOUT:g})",
    )
    probe.add_argument("--exchange", help="the topic exchange (default: $DEPCACHE_EXCHANGE)")
    probe.add_argument(
        "--event",
        default=canary.PROBE_EVENT,
        help=f"the probe's event name and routing key (default {canary.PROBE_EVENT})",
    )
    probe.add_argument("--json", action="store_true", help="print the outcome as JSON")
    probe.set_defaults(run=cmd_check)
