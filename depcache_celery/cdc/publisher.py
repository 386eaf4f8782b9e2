"""Publishing the CDC's events to the bus, each confirmed by the broker before the slot moves.

A :class:`BusPublisher` holds one kombu connection with publisher confirms
(``confirm_publish``): on RabbitMQ, :meth:`BusPublisher.publish` returns only once the broker
has every message (a nack, a lost connection or an unroutable message raises); on Redis a
publish is a command whose reply is the confirmation. It declares the durable topic exchange and,
unless told not to, the worker's durable queue with its bindings (the same declaration the
worker makes), so events published before any worker ever ran wait in that queue. On AMQP
messages are published ``mandatory``: one that no queue takes comes back and counts as not
delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kombu import Connection, Producer

from ..bus import event_exchange, event_queue, publish_properties
from ..producer.emit import Event
from ..settings import Settings

__all__ = ["BusPublisher", "PublishError"]

logger = logging.getLogger(__name__)


class PublishError(Exception):
    """The bus did not take (and confirm) every event; the message names the broker without
    its password."""


class BusPublisher:
    """Publishes events to ``settings.exchange`` on ``broker_url`` (see the module's
    docstring)."""

    def __init__(self, broker_url: str, settings: Settings, *, declare_queue: bool = True):
        self.settings = settings
        self.declare_queue = declare_queue
        self._url = broker_url
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self.where = str(Connection(broker_url).as_uri())

    def _connect(self) -> Producer:
        if self._producer is not None:
            return self._producer
        conn = Connection(self._url, transport_options={"confirm_publish": True}, connect_timeout=5)
        try:
            conn.ensure_connection(max_retries=1)
            channel = conn.channel()
            exchange = event_exchange(self.settings)
            exchange(channel).declare()
            if self.declare_queue:
                event_queue(self.settings)(channel).declare()
            producer = Producer(channel)
        except Exception:
            conn.release()
            raise
        self._conn, self._producer = conn, producer
        return producer

    def publish(self, events: Sequence[Event]) -> None:
        """Publish ``events`` persistently, each confirmed before the next.

        Raises:
            PublishError: the broker is unreachable, refused (nacked) or returned a message, or
                the connection was lost; the connection is then dropped, and the next call
                makes a new one. Events already confirmed may be published again by a retry
                (delivery is at least once).
        """
        try:
            producer = self._connect()
            assert self._conn is not None
            mandatory = self._conn.transport.driver_type == "amqp"
            exchange = event_exchange(self.settings)
            for event in events:
                producer.publish(
                    event.body,
                    exchange=exchange,
                    **publish_properties(event.event, event.id),
                    mandatory=mandatory,
                    retry=False,
                )
        except Exception as exc:
            self.close()
            raise PublishError(
                f"could not publish to exchange {self.settings.exchange!r} on {self.where}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def close(self) -> None:
        """Drop the connection (a channel that saw an error is never reused)."""
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # already broken
                logger.debug("depcache cdc: error closing the broker connection", exc_info=True)
