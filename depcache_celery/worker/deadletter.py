"""Dead letters: what the worker could not apply, kept in a durable queue with the reason.

Each dead letter is a JSON object (content type ``application/json``) with the reason also in
the message header ``x-depcache-reason``::

    {"kind": "malformed", "reason": "not JSON: Expecting value: line 1 column 1 (char 0)",
     "at": 1764072000.12, "exchange": "depcache.events", "routing_key": "user.updated",
     "content_type": "application/json", "headers": {}, "body": "<the original body as text>"}

``body`` holds the original body when it is UTF-8 text; otherwise ``body_base64`` holds it
base64-encoded. Kinds: ``malformed`` (the message could not be parsed or routed: it will never
apply) and ``expired`` (a failed manager's share that was retried for longer than the retry age:
it also has ``dependencies``, ``managers``, ``attempts`` and ``errors``).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from typing import Any

from kombu import Producer, Queue

__all__ = ["KIND_HEADER", "REASON_HEADER", "dead_letter_queue", "envelope", "publish"]

REASON_HEADER = "x-depcache-reason"
KIND_HEADER = "x-depcache-kind"
_MAX_HEADER_CHARS = 1000


def dead_letter_queue(name: str) -> Queue:
    """The durable dead-letter queue ``name`` (published to through the default exchange)."""
    return Queue(name, durable=True, auto_delete=False)


def envelope(
    kind: str,
    reason: str,
    body: bytes | str | None = None,
    *,
    delivery_info: Mapping[str, Any] | None = None,
    content_type: str | None = None,
    headers: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The JSON-ready dead letter for one message (see the module's docstring)."""
    info = delivery_info or {}
    out: dict[str, Any] = {
        "kind": kind,
        "reason": reason,
        "at": time.time(),
        "exchange": info.get("exchange"),
        "routing_key": info.get("routing_key"),
        "content_type": content_type,
        "headers": dict(headers or {}),
    }
    if isinstance(body, (bytes, bytearray, memoryview)):
        raw = bytes(body)
        try:
            out["body"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            out["body_base64"] = base64.b64encode(raw).decode("ascii")
    elif isinstance(body, str):
        try:
            body.encode("utf-8")
            out["body"] = body
        except UnicodeEncodeError:
            raw = body.encode("utf-8", "surrogatepass")
            out["body_base64"] = base64.b64encode(raw).decode("ascii")
    out.update(extra)
    return out


def publish(producer: Producer, queue_name: str, letter: Mapping[str, Any]) -> None:
    """Publish ``letter`` (from :func:`envelope`) persistently to the dead-letter queue."""
    payload = json.dumps(letter, default=repr, ensure_ascii=False).encode("utf-8")
    producer.publish(
        payload,
        exchange="",
        routing_key=queue_name,
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        headers={
            REASON_HEADER: str(letter.get("reason", ""))[:_MAX_HEADER_CHARS],
            KIND_HEADER: str(letter.get("kind", "")),
        },
        declare=[dead_letter_queue(queue_name)],
        retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.5},
    )
