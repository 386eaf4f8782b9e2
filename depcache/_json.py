"""Fast JSON for depcache's own data: orjson when the ``fast-json`` extra is installed."""

from __future__ import annotations

import importlib
import json
import math
import re
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


# A run of 19 digits or more: an integer orjson would read as a float (beyond 64 bits), or a
# long digit string; such data takes the standard library's path, which keeps the integer.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_TEXT = re.compile(r"[0-9]{19}")
_FAILED = object()


def _fast_loads(data: bytes | str) -> Any:
    """orjson's reading of ``data``, or ``_FAILED`` when it refuses it or could read it
    differently from the standard library (see :func:`strict_loads`)."""
    if _orjson is None:
        return _FAILED
    if isinstance(data, str):
        long_digits = _LONG_DIGITS_TEXT.search(data) is not None
    elif isinstance(data, (bytes, bytearray)):
        long_digits = _LONG_DIGITS.search(data) is not None
    else:  # what else the standard library takes or refuses, it decides
        return _FAILED
    if long_digits:
        return _FAILED
    try:
        return _orjson.loads(data)
    except ValueError:  # orjson.JSONDecodeError: the standard library says what is wrong
        return _FAILED


def strict_loads(data: bytes | str) -> Any:
    """Parse JSON as RFC 8259 defines it, for data anyone may have written (pub/sub).

    Raises ValueError (naming what is wrong) for malformed JSON, ``NaN``/``Infinity`` (which
    Python's json module accepts), numbers beyond a float's range (``1e999``, which it reads
    as infinity), integers longer than Python converts, and nesting deeper than the
    interpreter's recursion allows.

    With orjson installed, it reads the data first (about ten times faster): orjson refuses
    ``NaN``, ``Infinity`` and ``1e999`` itself and reads everything else it accepts as the
    standard library does, except integers beyond 64 bits (it makes them floats), so data
    with a run of 19 digits or more skips it. Whatever orjson refuses is read again by the
    standard library, which decides and names the error: both paths accept the same data
    and return the same values (``tests/core/test_strict_json.py``)."""
    fast = _fast_loads(data)
    if fast is not _FAILED:
        return fast
    try:
        return json.loads(data, parse_constant=_not_a_number, parse_float=_finite)
    except RecursionError:
        raise ValueError("nested too deeply") from None
