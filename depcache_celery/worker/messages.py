"""The bus message format: parse and validate what other services publish.

A message is one JSON object, UTF-8 encoded::

    {"event": "user.updated", "data": {"id": 123}, "id": "7f3c...", "dependencies": ["user:123"]}

| field | type | |
|---|---|---|
| ``event`` | non-empty string | the event name (also the routing key it is published with) |
| ``data`` | object | what the event's handlers read (optional with ``dependencies``) |
| ``id`` | string or null | optional: the producer's id of the event, for logs and tracing |
| ``dependencies`` | list of non-empty strings, or null | optional: invalidated as well |

Other fields are ignored (so producers can add some). Anything else is a :class:`BadMessage`,
``NaN``, ``Infinity`` and numbers beyond a float's range (``1e999``) anywhere in the body
included: they are not JSON, and :func:`~depcache_celery.emit` refuses to send them.
A Debezium change event (or tombstone) is accepted as well: see
:mod:`depcache_celery.worker.debezium`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from depcache.serializers.json import strict_loads

from . import debezium

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "BadMessage", "BusMessage", "parse_message"]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024


class BadMessage(ValueError):
    """A bus message that is not JSON, has the wrong shape or field types, or is too big.

    ``reason`` says which, in words fit for a dead letter.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class BusMessage:
    """A valid bus message."""

    event: str
    data: dict[str, Any]
    id: str | None = None
    dependencies: list[str] | None = field(default=None)


def _type_name(value: object) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _decode(raw: bytes | bytearray | memoryview | str, max_bytes: int) -> str:
    if isinstance(raw, str):
        try:
            size = len(raw.encode("utf-8"))
        except UnicodeEncodeError:
            raise BadMessage("not UTF-8 text (lone surrogates)") from None
        if size > max_bytes:
            raise BadMessage(f"too big: {size} bytes, the limit is {max_bytes}")
        return raw
    if isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
        if len(data) > max_bytes:
            raise BadMessage(f"too big: {len(data)} bytes, the limit is {max_bytes}")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadMessage(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    raise BadMessage(f"body is {type(raw).__name__}, not bytes or text")


_MISSING = object()


def _event(obj: dict[str, Any]) -> str:
    if "event" not in obj:
        raise BadMessage("missing field 'event'")
    event = obj["event"]
    if not isinstance(event, str):
        raise BadMessage(f"field 'event' must be a string, got {_type_name(event)}")
    if not event:
        raise BadMessage("field 'event' must not be empty")
    return event


def _dependencies(deps: object) -> list[str] | None:
    if deps is None:
        return None
    if not isinstance(deps, list):
        kind = _type_name(deps)
        raise BadMessage(f"field 'dependencies' must be an array of strings, got {kind}")
    for index, dep in enumerate(deps):
        if not isinstance(dep, str):
            raise BadMessage(
                f"field 'dependencies' must hold strings, got {_type_name(dep)} at index {index}"
            )
        if not dep:
            raise BadMessage(f"field 'dependencies' holds an empty string at index {index}")
    return deps


def parse_message(
    raw: bytes | bytearray | memoryview | str, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> BusMessage:
    """Parse and validate one bus message.

    Raises:
        BadMessage: the body is over ``max_bytes`` (UTF-8 encoded), not UTF-8, not JSON (``NaN``,
            ``Infinity`` or a number beyond a float's range anywhere in it), not an object,
            lacks ``event`` (or ``data`` without ``dependencies``), or has a field of the
            wrong type.
    """
    text = _decode(raw, max_bytes)
    if text.startswith("\ufeff"):  # a UTF-8 BOM some producers write
        text = text[1:]
    try:
        # Python's json reads NaN, Infinity and -Infinity, and 1e999 as infinity: refused here
        obj = strict_loads(text)
    except ValueError as exc:  # also nesting too deep, an integer longer than Python converts
        raise BadMessage(f"not JSON: {exc}") from None
    if debezium.is_envelope(obj):  # a Debezium change event (see depcache_celery.worker.debezium)
        return _from_debezium(obj)
    if not isinstance(obj, dict):
        raise BadMessage(f"not a JSON object but {_type_name(obj)}")

    event = _event(obj)
    data = obj.get("data", _MISSING)
    if data is _MISSING and obj.get("dependencies") is not None:
        data = {}  # an event that names its dependencies needs no data
    if data is _MISSING:
        raise BadMessage("missing field 'data' (needed unless the message has 'dependencies')")
    if not isinstance(data, dict):
        raise BadMessage(f"field 'data' must be an object, got {_type_name(data)}")
    message_id = obj.get("id")
    if message_id is not None and not isinstance(message_id, str):
        raise BadMessage(f"field 'id' must be a string, got {_type_name(message_id)}")
    deps = _dependencies(obj.get("dependencies"))
    return BusMessage(event=event, data=data, id=message_id, dependencies=deps)


def _from_debezium(obj: object) -> BusMessage:
    try:
        change = debezium.parse_envelope(obj)
    except debezium.EnvelopeError as exc:
        raise BadMessage(f"Debezium envelope: {exc}") from None
    return BusMessage(change.event, change.data, change.id, change.dependencies)
