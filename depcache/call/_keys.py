"""Cache keys for decorated calls.

A key is ``<module>.<qualname>:<digest>``: the readable part is fixed when the function is
decorated, the digest is a BLAKE2b hash of a *typed* encoding of the arguments, so ``f(1)``,
``f("1")``, ``f(1.0)`` and ``f(True)`` get different keys while ``f(a=1, b=2)`` and
``f(b=2, a=1)`` share one.

Objects are encoded by the rules of the seed library, in order: a ``__cache_key__()`` method
(or attribute), a ``_cache_key`` attribute, a ``pk`` attribute (``ClassName::pk``), an ``id``
attribute (``ClassName::id``), and finally ``str()`` qualified by the object's type.
"""

from __future__ import annotations

import hashlib
from binascii import b2a_base64
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["KeyTemplate", "encode_argument"]

_Encoder = Callable[[Any], str]


def _encode_str(value: str) -> str:
    return "s" + repr(value)


def _encode_int(value: int) -> str:
    return "i" + repr(value)


def _encode_float(value: float) -> str:
    return "f" + repr(value)


def _encode_bool(value: bool) -> str:
    return "T" if value else "F"


def _encode_none(_value: None) -> str:
    return "N"


def _encode_bytes(value: bytes) -> str:
    return "b" + repr(value)


def _encode_tuple(value: tuple[Any, ...]) -> str:
    return "(" + ",".join(map(encode_argument, value)) + ")"


def _encode_list(value: list[Any]) -> str:
    return "[" + ",".join(map(encode_argument, value)) + "]"


def _encode_set(value: set[Any] | frozenset[Any]) -> str:
    tag = "{" if isinstance(value, set) else "z{"
    return tag + ",".join(sorted(map(encode_argument, value))) + "}"


def _encode_dict(value: Mapping[Any, Any]) -> str:
    items = sorted(encode_argument(k) + ":" + encode_argument(v) for k, v in value.items())
    return "d{" + ",".join(items) + "}"


def _encode_ordered_dict(value: Mapping[Any, Any]) -> str:
    """In order: OrderedDicts are equal only in the same order."""
    items = ",".join(encode_argument(k) + ":" + encode_argument(v) for k, v in value.items())
    return "o{" + items + "}"


_BY_TYPE: dict[type[Any], _Encoder] = {
    OrderedDict: _encode_ordered_dict,  # before dict: its subclasses are dicts too
    str: _encode_str,
    int: _encode_int,
    float: _encode_float,
    bool: _encode_bool,
    type(None): _encode_none,
    bytes: _encode_bytes,
    tuple: _encode_tuple,
    list: _encode_list,
    set: _encode_set,
    frozenset: _encode_set,
    dict: _encode_dict,
}


def _type_name(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def _encode_object(value: Any) -> str:
    if isinstance(value, type):  # a class: its __cache_key__ etc. would be unbound methods
        return "c" + value.__module__ + "." + value.__qualname__
    custom = getattr(value, "__cache_key__", None)
    if custom is not None:
        return "k" + repr(str(custom() if callable(custom) else custom))
    custom = getattr(value, "_cache_key", None)
    if custom is not None:
        return "k" + repr(str(custom))
    for attribute in ("pk", "id"):
        ident = getattr(value, attribute, None)
        if ident is not None and not callable(ident):
            return "m" + repr(f"{type(value).__name__}::{ident}") + encode_argument(ident)
    for base, encoder in _BY_TYPE.items():  # subclasses of builtins, e.g. enums of str
        if isinstance(value, base):
            return "<" + _type_name(value) + ">" + encoder(value)
    return "r" + _type_name(value) + ":" + repr(str(value))


def encode_argument(value: Any) -> str:
    """Encode one argument as an unambiguous string that includes its type."""
    encoder = _BY_TYPE.get(type(value))
    if encoder is not None:
        return encoder(value)
    return _encode_object(value)


#: BLAKE2b with the digest size set: ``copy()`` of it is cheaper than a new hasher per call
_HASHER = hashlib.blake2b(digest_size=16)


class KeyTemplate:
    """The key layout of one decorated function, built once at decoration time."""

    __slots__ = ("base",)

    def __init__(self, func: Callable[..., Any]) -> None:
        module = getattr(func, "__module__", None) or "<unknown>"
        qualname = getattr(func, "__qualname__", None) or repr(func)
        self.base = f"{module}.{qualname}:"

    def key(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """Return the cache key of a call with these arguments."""
        if not kwargs and len(args) == 1:  # the common f(id): the same encoding, built inline
            value = args[0]
            cls = type(value)
            if cls is int:
                encoded = "(i" + repr(value) + ")"
            elif cls is str:
                encoded = "(s" + repr(value) + ")"
            else:
                encoded = _encode_tuple(args)
        else:
            encoded = _encode_tuple(args)
            if kwargs:
                encoded += "|" + ",".join(
                    # the name quoted: f(**{"a=1,b": ...}) must not forge f(a=1, b=...)
                    repr(name) + "=" + encode_argument(kwargs[name])
                    for name in sorted(kwargs)
                )
        hasher = _HASHER.copy()
        hasher.update(encoded.encode("utf-8", "surrogatepass"))
        # base64, not hex: 22 characters instead of 32 keep the names an index holds under
        # Redis's 64-byte limit for compact sorted sets (zset-max-listpack-value); '+' and '/'
        # mean nothing in a key or a glob pattern
        return self.base + b2a_base64(hasher.digest(), newline=False)[:22].decode()
