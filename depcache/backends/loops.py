"""One asyncio client per event loop, closed when that loop shuts down.

asyncio connections belong to the loop that opened them, and an application (or a test
suite) may run several loops in turn. :class:`PerLoop` makes a client on first use in each
running loop, and hands the loop an async generator whose ``finally`` closes the client:
``asyncio.run`` and ``asyncio.Runner`` call ``shutdown_asyncgens()`` before closing a loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["PerLoop"]


class _Closable(Protocol):
    def aclose(self) -> Awaitable[None]: ...


C = TypeVar("C", bound=_Closable)


async def _close_with_loop(client: _Closable) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await client.aclose()


class _Slot(Generic[C]):
    __slots__ = ("client", "closer", "started")

    def __init__(self, client: C) -> None:
        self.client = client
        self.closer = _close_with_loop(client)
        # running the closer to its yield registers it with the loop's shutdown_asyncgens()
        self.started = asyncio.ensure_future(anext(self.closer))


class PerLoop(Generic[C]):
    """Clients made by ``factory``, one per running event loop."""

    def __init__(self, factory: Callable[[], C]) -> None:
        self._factory = factory
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slot[C]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> C:
        """The client of the running loop (made on first use). Needs a running loop."""
        loop = asyncio.get_running_loop()
        slot = self._slots.get(loop)
        if slot is None:
            slot = self._slots[loop] = _Slot(self._factory())
        return slot.client

    async def close(self) -> None:
        """Close the running loop's client now."""
        slot = self._slots.pop(asyncio.get_running_loop(), None)
        if slot is not None:
            await slot.client.aclose()
