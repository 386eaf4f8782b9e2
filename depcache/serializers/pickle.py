"""SignedPickleSerializer: pickle for values JSON cannot hold, opt-in and signed.

Unpickling runs code named by the data, so a writable Redis would be a remote shell. This
serializer signs every payload with HMAC-SHA256 under a secret key and refuses to unpickle
anything whose signature does not match: whoever can write to Redis but does not hold the
key cannot make a process run code. Share the key only between the processes of one
application (``DEP_CACHE_PICKLE_KEY``, at least 32 characters).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
from typing import Any

from ..errors import ConfigError
from .base import BaseSerializer

__all__ = ["SignedPickleSerializer"]

_MAGIC = b"SP1"
_DIGEST = hashlib.sha256().digest_size
_MIN_KEY = 32


class SignedPickleSerializer(BaseSerializer):
    """Pickle protocol 5, signed with HMAC-SHA256.

    Args:
        key: the signing key (default: ``DEP_CACHE_PICKLE_KEY``).

    Raises:
        ConfigError: no key, or a key shorter than 32 characters.
    """

    def __init__(self, key: bytes | str | None = None) -> None:
        raw = key if key is not None else os.environ.get("DEP_CACHE_PICKLE_KEY")
        if not raw:
            raise ConfigError(
                "SignedPickleSerializer needs a secret key: pass key= or set DEP_CACHE_PICKLE_KEY"
            )
        secret = raw.encode("utf-8") if isinstance(raw, str) else raw
        if len(secret) < _MIN_KEY:
            raise ConfigError(f"the pickle signing key must be at least {_MIN_KEY} characters long")
        self._key = secret

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def dump(self, obj: Any) -> bytes:
        """Pickle and sign ``obj``."""
        payload = pickle.dumps(obj, protocol=5)
        return _MAGIC + self._sign(payload) + payload

    def load(self, data: str | bytes) -> Any:
        """Verify the signature, then unpickle. Raises ValueError on any mismatch."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        if not raw.startswith(_MAGIC):
            raise ValueError("not SignedPickleSerializer data")
        signature = raw[len(_MAGIC) : len(_MAGIC) + _DIGEST]
        payload = raw[len(_MAGIC) + _DIGEST :]
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise ValueError("signature mismatch: the entry was not written with this key")
        return pickle.loads(payload)  # safe: the signature was verified above
