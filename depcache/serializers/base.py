"""The serializer interface: turn a result into text or bytes and back, exactly."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

__all__ = ["BaseSerializer"]


class BaseSerializer(ABC):
    """Turns cached values into ``str`` or ``bytes`` and back.

    ``load(dump(x))`` must equal ``x`` with the same types, or ``dump`` must raise
    :class:`~depcache.errors.SerializationError` (or ``TypeError``/``ValueError``) naming the
    type it cannot store. ``load`` is fed data read from the backend: it must not import modules
    or call functions named by that data; on malformed data it raises any ``Exception`` and the
    entry counts as a miss.
    """

    @abstractmethod
    def dump(self, obj: Any) -> str | bytes:
        """Serialize ``obj`` for storage."""

    @abstractmethod
    def load(self, data: str | bytes) -> Any:
        """Rebuild the object that ``dump`` serialized."""
