"""Fast JSON for depcache's own data: orjson when the ``fast-json`` extra is installed."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

__all__ = ["HAS_ORJSON", "dumps", "loads", "stdlib_dumps"]


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
