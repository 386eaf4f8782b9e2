"""The CDC loop: read the slot, publish each committed change's invalidation, then confirm.

:class:`Cdc` runs sessions until stopped. A session:

1. opens the SQL connection (:class:`~.catalog.Catalog`), creates the publication and the slot
   when missing, and checks the slot (a slot whose WAL was removed is *lost*: see
   ``on_slot_lost``);
2. streams the slot from its confirmed position (:class:`~.replication.ReplicationStream`),
   decoding ``pgoutput`` messages into row changes and their dependencies
   (:mod:`.changes`), gathered in a :class:`~.batching.ChangeBatch`;
3. flushes the batch when the stream has nothing more to give right now, when it holds
   ``max_batch_rows`` changes (a large transaction is published in parts, so memory stays
   bounded), or after ``max_batch_delay`` seconds: it waits until the batch's transactions are
   visible to new snapshots, publishes its events with publisher confirms, retrying with
   backoff while the bus is down, and only then confirms the slot up to the end of the last
   transaction the batch completed.

So the slot's confirmed position never passes a change whose invalidation the broker has not
confirmed: a process killed at any point starts again where the slot stands and publishes
again what was not confirmed (at least once). Any error of the database side (connection
lost, server restarted, a message it cannot decode) ends the session; the next one starts
after a backoff, from the slot's position. While the bus is down nothing is confirmed, so the
server keeps the slot's WAL: the lag is logged and exposed (:mod:`.metrics`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from depcache.db.scheme import unknown_rows_dependencies

from ..producer.emit import Event
from ..settings import Settings
from .batching import ChangeBatch
from .catalog import Catalog, CatalogError, SlotLost, SlotStatus
from .changes import Table, change_dependencies, resolve_types, truncate_dependencies
from .metrics import CdcMetrics
from .pgoutput import (
    Begin,
    Commit,
    Delete,
    Insert,
    Message,
    ProtocolError,
    Relation,
    Truncate,
    Update,
    decode,
    format_lsn,
)
from .publisher import BusPublisher, PublishError
from .replication import Keepalive, ReplicationError, ReplicationStream, safe_dsn

__all__ = ["DEFAULT_PUBLICATION", "DEFAULT_SLOT", "Cdc", "CdcConfig"]

logger = logging.getLogger(__name__)

DEFAULT_SLOT = "depcache"
DEFAULT_PUBLICATION = "depcache"

_OPS = {Insert: "insert", Update: "update", Delete: "delete"}


@dataclass(frozen=True)
class CdcConfig:
    """What ``depcache cdc`` runs with (see the README's table of options)."""

    dsn: str
    broker_url: str
    slot: str = DEFAULT_SLOT
    publication: str = DEFAULT_PUBLICATION
    tables: tuple[str, ...] = ()
    create: bool = True
    event_prefix: str = "db"
    max_batch_rows: int = 5000
    max_batch_delay: float = 0.05
    status_interval: float = 10.0
    retry_backoff_max: float = 30.0
    lag_warning_bytes: int = 1 << 30
    declare_queue: bool = True
    on_slot_lost: str = "recreate"
    settings: Settings = field(default_factory=Settings)


class _Stopped(Exception):
    """Raised inside a session when :meth:`Cdc.stop` was called during a wait."""


class Cdc:
    """The CDC process (see the module's docstring). :meth:`run` blocks until :meth:`stop`."""

    def __init__(
        self,
        config: CdcConfig,
        *,
        metrics: CdcMetrics | None = None,
        publisher: Callable[[CdcConfig], BusPublisher] | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or CdcMetrics()
        make = publisher or (
            lambda c: BusPublisher(c.broker_url, c.settings, declare_queue=c.declare_queue)
        )
        self._publisher = make(config)
        self._stop = threading.Event()
        self.where = safe_dsn(config.dsn)
        # per session
        self._tables: dict[int, Table] = {}
        self._batch = self._new_batch()
        self._in_txn = False
        self._xid = 0
        self._received = 0
        self._confirmed = 0
        self._server_end = 0
        self._last_status = 0.0
        self._next_health = 0.0

    # -- control ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to return: the batch in hand is published and confirmed if the bus
        takes it at once, else left for the next run (it is still in the slot)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def run(self) -> int:
        """Run sessions until stopped; returns the exit status (0, or 3 when the slot was lost
        and ``on_slot_lost`` is ``exit``)."""
        delay = 0.5
        logger.info(
            "depcache cdc: streaming slot %r (publication %r) of %s to exchange %r on %s",
            self.config.slot,
            self.config.publication,
            self.where,
            self.config.settings.exchange,
            self._publisher.where,
        )
        try:
            while not self.stopping:
                started = time.monotonic()
                try:
                    self._session()
                except _Stopped:
                    break
                except SlotLost as exc:
                    logger.error("depcache cdc: %s", exc)
                    return 3
                except (ReplicationError, CatalogError, ProtocolError, ValueError) as exc:
                    self.metrics.add("reconnects")
                    if time.monotonic() - started > 60:
                        delay = 0.5  # it had been working: retry soon
                    logger.warning("depcache cdc: %s; starting again in %.1f s", exc, delay)
                    if self._stop.wait(delay):
                        break
                    delay = min(delay * 2, self.config.retry_backoff_max)
        finally:
            self._publisher.close()
        logger.info("depcache cdc: stopped at %s", format_lsn(self._confirmed))
        return 0

    # -- a session -------------------------------------------------------------------------------
    def _session(self) -> None:
        config = self.config
        catalog = Catalog(config.dsn)
        catalog.connect()
        stream: ReplicationStream | None = None
        try:
            if config.create and catalog.ensure_publication(config.publication, config.tables):
                logger.info("depcache cdc: created publication %r", config.publication)
            status = catalog.slot_status(config.slot)
            if status is None and config.create:
                status = self._create_slot(catalog, lost=False)
            elif status is not None and status.wal_status == "lost":
                status = self._create_slot(catalog, lost=True)
            if status is None:
                raise CatalogError(
                    f"replication slot {config.slot!r} does not exist on {self.where} "
                    "(run without --no-create to create it)"
                )
            self._reset(status)
            stream = ReplicationStream(config.dsn, config.slot, config.publication)
            stream.open()
            logger.info(
                "depcache cdc: streaming from %s (%d bytes behind the server)",
                format_lsn(status.confirmed_lsn),
                status.lag_bytes,
            )
            self._loop(stream, catalog)
            self._flush(stream, catalog, final=True)
        finally:
            if stream is not None:
                stream.close()
            catalog.close()

    def _reset(self, status: SlotStatus) -> None:
        self._tables = {}
        self._batch = self._new_batch()
        self._in_txn = False
        self._received = self._confirmed = self._server_end = status.confirmed_lsn
        self._last_status = time.monotonic()
        self._next_health = 0.0
        self.metrics.set("confirmed_lsn", status.confirmed_lsn)

    def _new_batch(self) -> ChangeBatch:
        return ChangeBatch(self.config.event_prefix, self.config.settings.max_message_bytes)

    def _loop(self, stream: ReplicationStream, catalog: Catalog) -> None:
        config = self.config
        limit = 1000
        while not self.stopping:
            timeout = 0.2
            if self._batch:
                timeout = max(0.0, config.max_batch_delay - self._batch.age())
            frames = stream.read(timeout, limit)
            reply = False
            for frame in frames:
                if isinstance(frame, Keepalive):
                    self._server_end = max(self._server_end, frame.wal_end)
                    reply = reply or frame.reply_requested
                    continue
                self._received = max(self._received, frame.data_start)
                self._handle(decode(frame.payload), catalog)
                if self._batch.rows >= config.max_batch_rows:
                    self._flush(stream, catalog)
            drained = len(frames) < limit
            if self._batch and (drained or self._batch.age() >= config.max_batch_delay):
                self._flush(stream, catalog)
            elif not self._batch and self._batch.end_lsn > self._confirmed:
                self._flush(stream, catalog)  # transactions without changes to publish
            if not self._in_txn and not self._batch and self._server_end > self._confirmed:
                # everything received is handled, and the server has nothing for us before
                # its WAL end: let the slot move on (so it does not hold WAL while idle)
                self._confirmed = self._server_end
                reply = True
            now = time.monotonic()
            if reply or now - self._last_status >= config.status_interval:
                self._status(stream)
            if now >= self._next_health:
                self._health(catalog)

    def _handle(self, message: Message, catalog: Catalog) -> None:
        if isinstance(message, Begin):
            self._in_txn = True
            self._xid = message.xid
            self._batch.xids.add(message.xid)
        elif isinstance(message, Commit):
            self._in_txn = False
            self._batch.end_lsn = message.end_lsn
            self._batch.last_lsn = message.end_lsn
            self.metrics.add("transactions")
        elif isinstance(message, Relation):
            names = catalog.type_names(column.type_oid for column in message.columns)
            self._tables[message.oid] = resolve_types(message, names)
        elif isinstance(message, Insert | Update | Delete):
            table = self._table(message.relation)
            deps = change_dependencies(table, message)
            self._batch.add(table.schema, table.name, _OPS[type(message)], deps)
            self.metrics.add("changes")
        elif isinstance(message, Truncate):
            tables = [self._table(oid) for oid in message.relations]
            for table in tables:
                self._batch.add(
                    table.schema, table.name, "truncate", truncate_dependencies([table])
                )
            self.metrics.add("changes", len(tables))

    def _table(self, oid: int) -> Table:
        table = self._tables.get(oid)
        if table is None:
            raise ProtocolError(f"a change of relation {oid} came before its description")
        return table

    # -- flushing --------------------------------------------------------------------------------
    def _flush(self, stream: ReplicationStream, catalog: Catalog, *, final: bool = False) -> None:
        batch = self._batch
        if batch:
            catalog.wait_visible(batch.xids)
            self._publish(batch.events(), stream, catalog, final=final)
        self._batch = self._new_batch()
        if self._in_txn:
            self._batch.xids.add(self._xid)  # the rest of a large transaction follows
        if batch.end_lsn > self._confirmed:
            self._confirmed = batch.end_lsn
            self._status(stream)

    def _publish(
        self,
        events: list[Event],
        stream: ReplicationStream,
        catalog: Catalog,
        *,
        final: bool = False,
    ) -> None:
        """Publish until the bus confirmed every event; while it fails, retry with backoff,
        keep the replication connection alive, and report the lag."""
        delay = 0.25
        failing_since: float | None = None
        next_log = 0.0
        while True:
            try:
                self._publisher.publish(events)
            except PublishError as exc:
                self.metrics.add("publish_failures")
                self.metrics.set("bus_up", 0)
                now = time.monotonic()
                failing_since = failing_since or now
                if now >= next_log:
                    next_log = now + 30
                    logger.warning(
                        "depcache cdc: the bus is not taking events for %.0f s (%s); %d "
                        "change(s) wait, the slot stays at %s and the server keeps its WAL "
                        "meanwhile (lag %d bytes); retrying",
                        now - failing_since,
                        exc,
                        self._batch.rows,
                        format_lsn(self._confirmed),
                        int(self.metrics.get("lag_bytes")),
                    )
                if final or self.stopping:
                    raise _Stopped from None
                self._wait(delay, stream, catalog)
                delay = min(delay * 2, self.config.retry_backoff_max)
                continue
            self.metrics.add("events_published", len(events))
            self.metrics.set("bus_up", 1)
            if failing_since is not None:
                logger.warning(
                    "depcache cdc: the bus takes events again after %.0f s",
                    time.monotonic() - failing_since,
                )
            return

    def _wait(self, seconds: float, stream: ReplicationStream, catalog: Catalog) -> None:
        """Sleep ``seconds`` (less if stopped), telling the server we are alive."""
        deadline = time.monotonic() + seconds
        while True:
            # a lost connection ends the session after the publish; the slot has everything
            with contextlib.suppress(ReplicationError):
                self._status(stream)
            if time.monotonic() >= self._next_health:
                self._health(catalog)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._stop.wait(min(left, self.config.status_interval)):
                raise _Stopped

    def _status(self, stream: ReplicationStream) -> None:
        stream.send_status(max(self._received, self._confirmed), self._confirmed)
        self._last_status = time.monotonic()
        self.metrics.set("confirmed_lsn", self._confirmed)

    def _health(self, catalog: Catalog) -> None:
        self._next_health = time.monotonic() + self.config.status_interval
        status = catalog.slot_status(self.config.slot)
        if status is None:
            raise CatalogError(f"replication slot {self.config.slot!r} was dropped")
        self.metrics.set("lag_bytes", status.lag_bytes)
        self.metrics.set("retained_wal_bytes", status.retained_bytes)
        self.metrics.set(
            "safe_wal_bytes", -1 if status.safe_wal_size is None else status.safe_wal_size
        )
        if status.wal_status in ("unreserved", "lost"):
            logger.error(
                "depcache cdc: slot %r is %s: the server is about to remove (or removed) WAL it "
                "has not confirmed (max_slot_wal_keep_size)",
                self.config.slot,
                status.wal_status,
            )
        elif status.retained_bytes > self.config.lag_warning_bytes:
            logger.warning(
                "depcache cdc: slot %r holds %d bytes of WAL on the server (%d bytes not yet "
                "confirmed)",
                self.config.slot,
                status.retained_bytes,
                status.lag_bytes,
            )

    # -- creating the slot ----------------------------------------------------------------------
    def _create_slot(self, catalog: Catalog, *, lost: bool) -> SlotStatus:
        """Create the slot (anew, when it was lost), between two invalidations of every cached
        read of every published table.

        Writes made before a slot exists (or whose WAL a lost slot no longer has) are never
        streamed, so results cached from them may be stale: the invalidation after the creation
        covers them. The one before covers the same ground should the process die between the
        creation and the second one (leaving only the moment between the two unprotected).
        """
        config = self.config
        if lost:
            message = (
                f"replication slot {config.slot!r} is lost: the server removed WAL it had not "
                "confirmed (max_slot_wal_keep_size), so the changes since are gone"
            )
            if config.on_slot_lost != "recreate":
                raise SlotLost(f"{message}; drop it and start again (or --on-slot-lost recreate)")
            logger.error("depcache cdc: %s; creating it anew, invalidating every table", message)
        self._invalidate_all(catalog)
        if lost:
            catalog.drop_slot(config.slot)
        if catalog.ensure_slot(config.slot):
            logger.info("depcache cdc: created replication slot %r", config.slot)
        self._invalidate_all(catalog)
        status = catalog.slot_status(config.slot)
        if status is None:
            raise CatalogError(f"replication slot {config.slot!r} vanished after its creation")
        return status

    def _invalidate_all(self, catalog: Catalog) -> None:
        """Publish the invalidation of every cached read of every published table."""
        batch = self._new_batch()
        for schema, table in catalog.published_tables(self.config.publication):
            batch.add(schema, table, "resync", unknown_rows_dependencies(table, schema))
        if not batch:
            return
        events = batch.events()
        delay = 0.25
        while True:
            try:
                self._publisher.publish(events)
            except PublishError as exc:
                self.metrics.add("publish_failures")
                self.metrics.set("bus_up", 0)
                logger.warning("depcache cdc: %s; retrying in %.1f s", exc, delay)
                if self._stop.wait(delay):
                    raise _Stopped from None
                delay = min(delay * 2, self.config.retry_backoff_max)
                continue
            self.metrics.add("events_published", len(events))
            self.metrics.set("bus_up", 1)
            return
