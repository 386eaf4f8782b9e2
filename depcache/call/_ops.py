"""The operations the cache flow yields (``_flow.py``, ``_hit.py``) and the drivers perform
(``_drivers.py``): each is a request with its parameters; the docstring says what the driver
sends back."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..events import CacheEvent

__all__ = [
    "COMPUTE",
    "Acquire",
    "CallRecord",
    "Check",
    "Discard",
    "Emit",
    "Flow",
    "Join",
    "Lookup",
    "Notify",
    "Operation",
    "Store",
]


@dataclass(slots=True)
class Lookup:
    """Read the entry and the epoch. Result: ``(bytes | None, epoch | None)``."""

    key: str


class _Compute:
    """Call the function. Result: ``(True, value)`` or ``(False, exception)``."""

    __slots__ = ()


COMPUTE = _Compute()


@dataclass(slots=True)
class Check:
    """Whether an entry computed from ``epoch`` is still valid: none of ``dependencies`` (its
    manager's own) was invalidated since, or lost. Result: bool."""

    epoch: int
    dependencies: Iterable[str]


@dataclass(slots=True)
class Discard:
    """Delete an unreadable entry. Result: ignored."""

    key: str


@dataclass(slots=True)
class Store:
    """Store an entry unless a dependency was invalidated after ``epoch``. Result: bool."""

    key: str
    blob: bytes
    ttl: float | None
    dependencies: frozenset[str]
    epoch: int | None


@dataclass(slots=True)
class Join:
    """Single flight after a miss: lead the computation of ``key`` at ``epoch``, or wait for
    the call already leading it. Result: None (compute) or that call's outcome
    ``(ok, value or exception, dependencies)``. Calls share an outcome only if they read the
    same epoch, so no invalidation happened between the leader's lookup and the follower's."""

    key: str
    epoch: int


@dataclass(slots=True)
class Acquire:
    """Take the cross-process lock of ``key``. Result: a token (the driver releases it when
    the call ends), "" (no lock: compute), or None (another process computed it meanwhile:
    look again)."""

    key: str


@dataclass(slots=True)
class Emit:
    """Give an event to the manager's callbacks. Result: None."""

    event: CacheEvent


@dataclass(slots=True)
class Notify:
    """Call the decorator's ``callback``. Result: None."""

    is_hit: bool
    cached_result: Any


Operation = Lookup | _Compute | Join | Acquire | Store | Check | Discard | Emit | Notify
#: a flow: yields operations, receives their results, returns the call's value
Flow = Generator[Operation, Any, Any]


class CallRecord:
    """What the drivers learn from a flow besides its result: the call's dependencies, and
    whether the result may be shared with concurrent calls (see ``mark_uncacheable``)."""

    __slots__ = ("cacheable", "dependencies")

    def __init__(self) -> None:
        self.dependencies: Mapping[str, Iterable[str]] = {}
        self.cacheable = True
