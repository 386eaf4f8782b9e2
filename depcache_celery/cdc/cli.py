"""``depcache cdc``: stream PostgreSQL's committed changes to the bus as invalidation events.

    depcache cdc --dsn postgresql://... [--broker URL] [--slot NAME] [--publication NAME]
                 [--table SCHEMA.TABLE ...] [--no-create] [--exchange X] [--metrics-port N] ...

``--dsn`` defaults to ``DEPCACHE_CDC_DSN``; ``--broker`` to ``CELERY_BROKER_URL`` (else
``amqp://guest:guest@localhost:5672//``); ``--exchange`` and the worker's queue to the
``DEPCACHE_EXCHANGE``, ``DEPCACHE_QUEUE``, ``DEPCACHE_BINDING_KEYS`` and
``DEPCACHE_MAX_MESSAGE_BYTES`` settings, as the worker reads them. Runs until SIGTERM or SIGINT
(then publishes and confirms what it holds, if the bus takes it at once, and exits 0). Exit
status 2 for bad options, 3 when the slot was lost and ``--on-slot-lost exit``.

Registered on the ``depcache`` command through the ``depcache.commands`` entry point.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

import depcache

from ..cli import positive_int
from ..settings import DEFAULT_BROKER_URL, Settings
from .metrics import CdcMetrics
from .replication import safe_dsn
from .stream import DEFAULT_PUBLICATION, DEFAULT_SLOT, Cdc, CdcConfig

__all__ = ["DSN_VARIABLE", "register"]

DSN_VARIABLE = "DEPCACHE_CDC_DSN"
DEFAULT_BROKER = DEFAULT_BROKER_URL


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def config_from_args(args: argparse.Namespace) -> CdcConfig:
    """The :class:`CdcConfig` the options (and the environment) give.

    Raises:
        depcache.ConfigError: no DSN, or a bad setting.
    """
    dsn = args.dsn or os.environ.get(DSN_VARIABLE)
    if not dsn:
        raise depcache.ConfigError(f"depcache cdc needs --dsn (or ${DSN_VARIABLE})")
    conf: dict[str, Any] = {}
    if args.exchange:
        conf["depcache_exchange"] = args.exchange
    settings = Settings.from_conf(conf)
    return CdcConfig(
        dsn=dsn,
        broker_url=args.broker or os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER,
        slot=args.slot,
        publication=args.publication,
        tables=tuple(args.table or ()),
        create=not args.no_create,
        event_prefix=args.event_prefix,
        max_batch_rows=args.max_batch_rows,
        max_batch_delay=args.max_batch_delay,
        status_interval=args.status_interval,
        retry_backoff_max=args.retry_backoff_max,
        lag_warning_bytes=args.lag_warning_bytes,
        declare_queue=not args.no_declare_queue,
        on_slot_lost=args.on_slot_lost,
        settings=settings,
    )


def cmd_cdc(args: argparse.Namespace) -> int:
    """Run the CDC process until SIGTERM/SIGINT."""
    config = config_from_args(args)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=getattr(logging, args.log_level),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    metrics = CdcMetrics()
    if args.metrics_port:
        try:
            metrics.serve(args.metrics_port)
        except ImportError:
            raise depcache.ConfigError(
                '--metrics-port needs prometheus-client (pip install "depcache[prometheus]")'
            ) from None
    cdc = Cdc(config, metrics=metrics)

    def stop(signum: int, frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("depcache cdc: signal %d, stopping", signum)
        cdc.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"depcache cdc: slot {config.slot!r} of {safe_dsn(config.dsn)} -> exchange "
        f"{config.settings.exchange!r} (Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    return cdc.run()


def register(commands: Any) -> None:
    """Add ``cdc`` to the ``depcache`` command's sub-parsers."""
    parser = commands.add_parser(
        "cdc", help="stream PostgreSQL's committed changes to the bus as invalidations"
    )
    parser.add_argument("--dsn", help=f"PostgreSQL URI or conninfo (default: ${DSN_VARIABLE})")
    parser.add_argument(
        "--broker", help=f"broker URL (default: $CELERY_BROKER_URL or {DEFAULT_BROKER})"
    )
    parser.add_argument("--exchange", help="the topic exchange (default: $DEPCACHE_EXCHANGE)")
    parser.add_argument(
        "--slot", default=DEFAULT_SLOT, help="replication slot (default: %(default)s)"
    )
    parser.add_argument(
        "--publication", default=DEFAULT_PUBLICATION, help="publication (default: %(default)s)"
    )
    parser.add_argument(
        "--table",
        action="append",
        metavar="SCHEMA.TABLE",
        help="create the publication for these tables only (repeatable; default: all tables)",
    )
    parser.add_argument(
        "--no-create",
        action="store_true",
        help="do not create the publication and slot: fail when they are missing",
    )
    parser.add_argument(
        "--no-declare-queue",
        action="store_true",
        help="do not declare the worker's queue ($DEPCACHE_QUEUE) on the broker",
    )
    parser.add_argument(
        "--event-prefix", default="db", help="events are named PREFIX.schema.table.op"
    )
    parser.add_argument(
        "--max-batch-rows",
        type=positive_int,
        default=5000,
        help="publish after this many row changes, also inside a transaction "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--max-batch-delay",
        type=_positive_float,
        default=0.05,
        help="publish changes at most this many seconds after reading them (default: %(default)s)",
    )
    parser.add_argument(
        "--status-interval",
        type=_positive_float,
        default=10.0,
        help="seconds between status reports to the server and slot health checks",
    )
    parser.add_argument(
        "--retry-backoff-max",
        type=_positive_float,
        default=30.0,
        help="longest wait between retries while the bus or database is down (seconds)",
    )
    parser.add_argument(
        "--lag-warning-bytes",
        type=positive_int,
        default=1 << 30,
        help="log a warning while the slot holds more WAL than this (default: 1 GiB)",
    )
    parser.add_argument(
        "--on-slot-lost",
        choices=("recreate", "exit"),
        default="recreate",
        help="when max_slot_wal_keep_size removed the slot's WAL: create it anew and "
        "invalidate every published table (default), or exit with status 3",
    )
    parser.add_argument("--metrics-port", type=positive_int, help="serve Prometheus metrics")
    parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    parser.set_defaults(run=cmd_cdc)
