"""Fast JSON for depcache's own data: orjson when the ``fast-json`` extra is installed."""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from typing import Any

__all__ = ["HAS_ORJSON", "dumps", "loads", "stdlib_dumps", "strict_loads"]


def _import_orjson() -> Any:
    try:
        return importlib.import_module("orjson")
    except ImportError:  # pragma: no cover - exercised without the extra
        return None


_orjson = _import_orjson()
HAS_ORJSON = _orjson is not None


def stdlib_dumps(data: Any) -> bytes:
    """Compact, strict (no NaN), ASCII JSON from the standard library."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("ascii")


#: ``dumps(data) -> bytes``; raises TypeError/ValueError for what JSON cannot hold.
dumps: Callable[[Any], bytes] = _orjson.dumps if HAS_ORJSON else stdlib_dumps
#: ``loads(bytes) -> data``; raises ValueError on malformed input.
loads: Callable[[bytes], Any] = _orjson.loads if HAS_ORJSON else json.loads


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:30]} is beyond a float's range")
    return value


def strict_loads(data: bytes | str) -> Any:
    """Parse JSON as RFC 8259 defines it, for data anyone may have written (pub/sub).

    Raises ValueError (naming what is wrong) for malformed JSON, ``NaN``/``Infinity`` (which
    Python's json module accepts), numbers beyond a float's range (``1e999``, which it reads
    as infinity), integers longer than Python converts, and nesting deeper than the
    interpreter's recursion allows."""
    try:
        return json.loads(data, parse_constant=_not_a_number, parse_float=_finite)
    except RecursionError:
        raise ValueError("nested too deeply") from None
