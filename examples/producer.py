"""Another service publishing a domain event to the bus: raw JSON with plain kombu, no Celery.

    python examples/producer.py user.updated '{"id": 123}' [--dependency posts:user:123]

The broker is ``--broker``, else CELERY_BROKER_URL (the same bus the worker consumes), else the
local RabbitMQ; the exchange is ``--exchange``, else DEPCACHE_EXCHANGE, else ``depcache.events``.
Works on RabbitMQ (``amqp://``) and Redis (``redis://``) alike. The message is what the README's
"Event schema" section describes; any language can publish it.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Sequence

from kombu import Connection, Exchange

DEFAULT_BROKER = "amqp://guest:guest@localhost:5672//"


def publish(
    broker_url: str,
    exchange_name: str,
    event: str,
    data: dict[str, object],
    dependencies: Sequence[str] = (),
) -> dict[str, object]:
    """Publish one event as UTF-8 JSON, routed by its name; return the message sent."""
    message: dict[str, object] = {"event": event, "data": data, "id": uuid.uuid4().hex}
    if dependencies:
        message["dependencies"] = list(dependencies)
    # durable topic exchange; declaring it on this connection matters on the Redis transport,
    # where an undeclared exchange is treated as direct and wildcard bindings never match
    exchange = Exchange(exchange_name, type="topic", durable=True, auto_delete=False)
    with Connection(broker_url, connect_timeout=5) as conn:
        conn.Producer().publish(
            json.dumps(message).encode("utf-8"),
            exchange=exchange,
            routing_key=event,
            declare=[exchange],
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,  # persistent
            retry=True,
        )
    return message


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("event", help="event name, also the routing key (user.updated)")
    parser.add_argument("data", help="the event data as a JSON object ('{\"id\": 123}')")
    parser.add_argument("--dependency", action="append", default=[], help="extra dependency")
    parser.add_argument("--broker", default=os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER)
    parser.add_argument(
        "--exchange", default=os.environ.get("DEPCACHE_EXCHANGE") or "depcache.events"
    )
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        parser.error(f"data is not JSON ({exc}): {args.data!r}")
    if not isinstance(data, dict):
        parser.error(f"data must be a JSON object, got {args.data!r}")
    message = publish(args.broker, args.exchange, args.event, data, args.dependency)
    host = Connection(args.broker).as_uri()  # without the password
    print(f"published to {args.exchange!r} on {host}: {json.dumps(message)}")


if __name__ == "__main__":
    main()
