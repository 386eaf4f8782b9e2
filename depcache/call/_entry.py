"""The stored envelope of a cache entry: what kind it is, its dependencies, and the payload.

Layout (bytes): one kind byte, the *epoch* the computation started from (decimal digits; none
when the backend is to stamp it at store time), the dependencies as compact JSON
(``{namespace: [dep, ...]}``, by manager prefix), a newline, then the serializer's payload::

    v1764000000000123{"users":["user:1"]}\\n<payload>   a result whose payload is bytes
    V1764000000000123{}\\n<payload>                     a result whose payload is str
    e / E                                               a cached exception
                                                        ({"type", "args", "attrs"})

The Redis backends read the epoch and the manager's own dependencies on every hit, to check
that none was invalidated after the computation started or lost (``lua/lookup.lua``).

The header is always parsed by depcache's own JSON code, whatever the serializer. A cached
exception is rebuilt only as a class found among the allowed types and their subclasses
already loaded in this process; nothing read here can import a module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from .. import _json
from ..errors import SerializationError
from ..serializers.base import BaseSerializer

__all__ = ["CorruptEntry", "Entry", "decode_entry", "encode_entry", "encode_exception"]

logger = logging.getLogger("depcache")

_RESULT, _RESULT_STR, _EXC, _EXC_STR = b"v", b"V", b"e", b"E"
_NO_DEPS = b"{}"
#: kind byte -> (is an exception, payload is str)
_KINDS = {
    _RESULT: (False, False),
    _RESULT_STR: (False, True),
    _EXC: (True, False),
    _EXC_STR: (True, True),
}
#: the dependencies of an entry decoded without them (shared: immutable)
_UNREAD: Mapping[str, Iterable[str]] = MappingProxyType({})

DepsByManager = Mapping[str, Iterable[str]]


class CorruptEntry(ValueError):
    """An entry's bytes cannot be decoded; the entry counts as a miss."""


class Entry:
    """A decoded entry: the value, or the exception to re-raise, and its dependencies.

    Read-only by convention (a plain slotted class: it is built on every hit, and a frozen
    dataclass costs several times more to build)."""

    __slots__ = ("dependencies", "epoch", "exception", "value")

    def __init__(
        self,
        value: Any,
        exception: BaseException | None,
        dependencies: Mapping[str, Iterable[str]],
        epoch: int | None = None,
    ) -> None:
        self.value = value
        self.exception = exception
        self.dependencies = dependencies
        #: the epoch its computation started from, when known (checked by a validated L1 hit)
        self.epoch = epoch

    def __repr__(self) -> str:
        return f"Entry({self.value!r}, {self.exception!r}, {self.dependencies!r})"


def _deps_json(dependencies: DepsByManager) -> bytes:
    clean = {name: sorted(deps) for name, deps in dependencies.items() if deps}
    if not clean:
        return _NO_DEPS
    return _json.dumps(clean)


def _pack(
    kind_bytes: bytes, kind_str: bytes, epoch: int | None, deps: bytes, payload: str | bytes
) -> bytes:
    stamp = b"" if epoch is None else b"%d" % epoch
    if isinstance(payload, str):
        return kind_str + stamp + deps + b"\n" + payload.encode("utf-8", "surrogatepass")
    if isinstance(payload, bytes | bytearray):
        return kind_bytes + stamp + deps + b"\n" + bytes(payload)
    raise SerializationError(f"serializer returned {type(payload).__name__}, expected str or bytes")


def _dump(serializer: BaseSerializer, value: Any) -> str | bytes:
    try:
        return serializer.dump(value)
    except SerializationError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        cls = type(value)
        raise SerializationError(
            f"{type(serializer).__name__} cannot store a value of type "
            f"{cls.__module__}.{cls.__qualname__}: {exc}"
        ) from exc


def encode_entry(
    serializer: BaseSerializer,
    value: Any,
    dependencies: DepsByManager,
    epoch: int | None = None,
) -> bytes:
    """Encode a result computed from ``epoch`` (None: stamped when stored). Raises
    SerializationError when the serializer cannot store it."""
    payload = _dump(serializer, value)
    return _pack(_RESULT, _RESULT_STR, epoch, _deps_json(dependencies), payload)


def _storable_attributes(serializer: BaseSerializer, exc: BaseException) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for name, value in vars(exc).items():
        if not isinstance(name, str) or name.startswith("__"):
            continue
        try:
            serializer.dump(value)
        except Exception:  # an attribute that cannot be stored is left out
            continue
        attrs[name] = value
    return attrs


def encode_exception(
    serializer: BaseSerializer,
    exc: BaseException,
    dependencies: DepsByManager,
    epoch: int | None = None,
) -> bytes:
    """Encode a raised exception (computed from ``epoch``): qualified type name, ``args`` and
    storable attributes."""
    cls = type(exc)
    name = f"{cls.__module__}.{cls.__qualname__}"
    attrs = _storable_attributes(serializer, exc)
    try:
        payload = _dump(serializer, {"type": name, "args": list(exc.args), "attrs": attrs})
    except SerializationError:  # arguments that cannot be stored: keep the message
        payload = _dump(serializer, {"type": name, "args": [str(exc)], "attrs": attrs})
    return _pack(_EXC, _EXC_STR, epoch, _deps_json(dependencies), payload)


def _find_exception_class(
    name: str, allowed: tuple[type[BaseException], ...]
) -> type[BaseException] | None:
    seen: set[type[BaseException]] = set()
    stack = list(allowed)
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if f"{cls.__module__}.{cls.__qualname__}" == name:
            return cls
        stack.extend(cls.__subclasses__())
    return None


def _rebuild_exception(data: Any, allowed: tuple[type[BaseException], ...]) -> BaseException:
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise CorruptEntry("exception entry without a type name")
    args = data.get("args")
    if not isinstance(args, list):
        raise CorruptEntry("exception entry without an argument list")
    attrs = data.get("attrs", {})
    if not isinstance(attrs, dict):
        raise CorruptEntry("exception entry with malformed attributes")
    cls = _find_exception_class(data["type"], allowed)
    if cls is None:
        raise CorruptEntry(f"cached exception type {data['type']!r} is not an allowed type")
    # rebuilt without calling __init__ (whose signature may differ from args): the same
    # args and attributes as the exception that was raised
    exc = cls.__new__(cls, *args)
    exc.args = tuple(args)
    exc.__dict__.update(attrs)
    return exc


def _parse_deps(raw: bytes) -> dict[str, list[str]]:
    if raw == _NO_DEPS:
        return {}
    deps = _json.loads(raw)
    if type(deps) is not dict:
        raise CorruptEntry("malformed dependency header")
    for names in deps.values():
        if type(names) is not list:
            raise CorruptEntry("malformed dependency header")
        for name in names:
            if type(name) is not str:
                raise CorruptEntry("malformed dependency header")
    return deps


def decode_entry(
    serializer: BaseSerializer,
    blob: bytes,
    allowed_exceptions: tuple[type[BaseException], ...] = (),
    *,
    dependencies: bool = True,
) -> Entry:
    """Decode an entry read from a backend. Raises CorruptEntry on anything unexpected.

    With ``dependencies=False`` (a hit that has no enclosing cached call to hand them to) the
    dependency header is only checked for its shape, not parsed, and the entry's
    ``dependencies`` are empty.
    """
    try:
        kind = _KINDS.get(blob[:1])
        end = blob.find(b"\n")
        if kind is None or end < 0:
            raise CorruptEntry("not a depcache entry")
        brace = blob.find(b"{", 1, end)
        if brace < 0 or (brace > 1 and not blob[1:brace].isdigit()):
            raise CorruptEntry("malformed entry header")
        header = blob[brace:end]
        epoch = None
        if dependencies:
            deps: Mapping[str, Iterable[str]] = _parse_deps(header)
            epoch = int(blob[1:brace]) if brace > 1 else None
        elif header[-1:] != b"}":
            raise CorruptEntry("malformed dependency header")
        else:
            deps = _UNREAD
        is_exception, is_str = kind
        payload = blob[end + 1 :]
        value = serializer.load(payload.decode("utf-8", "surrogatepass") if is_str else payload)
    except CorruptEntry:
        raise
    except Exception as exc:
        raise CorruptEntry(f"undecodable entry: {type(exc).__name__}: {exc}") from exc
    if is_exception:
        return Entry(None, _rebuild_exception(value, allowed_exceptions), deps, epoch)
    return Entry(value, None, deps, epoch)
