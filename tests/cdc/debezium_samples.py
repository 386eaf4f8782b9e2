"""Debezium change events as the PostgreSQL connector writes them with Kafka Connect's
JsonConverter (``schemas.enable`` true: ``{"schema", "payload"}``; false: the payload alone).

The table: ``public.users (id int4 PK, name text, email varchar, score numeric(10,2), seen
timestamp, token uuid)``; ``score`` is sent as ``Decimal`` bytes (base64 of the unscaled
value), ``seen`` as ``MicroTimestamp`` microseconds, ``token`` as a ``Uuid`` string.
"""

from __future__ import annotations

import base64
import copy
from decimal import Decimal
from typing import Any

COLUMNS: list[dict[str, Any]] = [
    {"type": "int32", "optional": False, "default": 0, "field": "id"},
    {"type": "string", "optional": True, "field": "name"},
    {"type": "string", "optional": True, "field": "email"},
    {
        "type": "bytes",
        "optional": True,
        "name": "org.apache.kafka.connect.data.Decimal",
        "version": 1,
        "parameters": {"scale": "2", "connect.decimal.precision": "10"},
        "field": "score",
    },
    {
        "type": "int64",
        "optional": True,
        "name": "io.debezium.time.MicroTimestamp",
        "version": 1,
        "field": "seen",
    },
    {
        "type": "string",
        "optional": True,
        "name": "io.debezium.data.Uuid",
        "version": 1,
        "field": "token",
    },
]

SOURCE_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        {"type": "string", "optional": False, "field": "version"},
        {"type": "string", "optional": False, "field": "connector"},
        {"type": "string", "optional": False, "field": "name"},
        {"type": "int64", "optional": False, "field": "ts_ms"},
        {"type": "string", "optional": False, "field": "db"},
        {"type": "string", "optional": False, "field": "schema"},
        {"type": "string", "optional": False, "field": "table"},
        {"type": "int64", "optional": True, "field": "txId"},
        {"type": "int64", "optional": True, "field": "lsn"},
    ],
    "optional": False,
    "name": "io.debezium.connector.postgresql.Source",
    "field": "source",
}


def envelope_schema(table: str = "users") -> dict[str, Any]:
    value = f"shop.public.{table}.Value"
    return {
        "type": "struct",
        "fields": [
            {
                "type": "struct",
                "fields": COLUMNS,
                "optional": True,
                "name": value,
                "field": "before",
            },
            {
                "type": "struct",
                "fields": COLUMNS,
                "optional": True,
                "name": value,
                "field": "after",
            },
            SOURCE_SCHEMA,
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
        "optional": False,
        "name": f"shop.public.{table}.Envelope",
        "version": 1,
    }


def decimal_bytes(value: Decimal, scale: int = 2) -> str:
    """A ``Decimal`` as Connect's JSON writes it: base64 of the big-endian unscaled value."""
    unscaled = int(value.scaleb(scale))
    size = max(1, (unscaled.bit_length() + 8) // 8)
    return base64.b64encode(unscaled.to_bytes(size, "big", signed=True)).decode()


def row(
    id: int,
    name: str | None = "Ada",
    email: str | None = "ada@example.com",
    score: Decimal | None = Decimal("1.50"),
    token: str | None = "6F9619FF-8B86-D011-B42D-00C04FC964FF",
) -> dict[str, Any]:
    return {
        "id": id,
        "name": name,
        "email": email,
        "score": None if score is None else decimal_bytes(score),
        "seen": 1_700_000_000_000_000,
        "token": token,
    }


def payload(
    op: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    table: str = "users",
) -> dict[str, Any]:
    return {
        "before": before,
        "after": after,
        "source": {
            "version": "2.5.0.Final",
            "connector": "postgresql",
            "name": "shop",
            "ts_ms": 1_700_000_000_000,
            "snapshot": "false",
            "db": "shop",
            "sequence": '[null,"23456"]',
            "schema": "public",
            "table": table,
            "txId": 750,
            "lsn": 23456,
            "xmin": None,
        },
        "op": op,
        "ts_ms": 1_700_000_000_123,
        "transaction": None,
    }


def with_schema(body: dict[str, Any]) -> dict[str, Any]:
    """The ``{"schema", "payload"}`` form (``value.converter.schemas.enable=true``)."""
    return {"schema": envelope_schema(body["source"]["table"]), "payload": copy.deepcopy(body)}
