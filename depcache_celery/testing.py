"""Helpers for an app's tests: what the app emits, without a broker.

::

    from depcache_celery.testing import capture_emits

    def test_renaming_a_user_tells_the_caches():
        with capture_emits() as emitted:
            rename_user(7, "Ada")           # calls depcache_celery.emit / invalidate_later
        assert emitted.event_names == ["user.updated"]
        assert emitted.events[0].data == {"id": 7}
        assert "user:7" in emitted.invalidated()    # as the worker's handlers map it

:func:`capture_emits` records what :func:`~depcache_celery.emit`,
:func:`~depcache_celery.aemit`, :func:`~depcache_celery.invalidate_later`,
:func:`~depcache_celery.invalidates`, :func:`~depcache_celery.forward_invalidations` and
:func:`~depcache_celery.publish_database_writes` would send, when they would send it, and sends
nothing. Input is checked as always (a bad event still raises), and deferral works as always:
inside a transaction (``deferred()``, Django, a tracked SQLAlchemy session) nothing is recorded
until the commit, and nothing at all after a rollback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .producer.capture import Emitted, EmittedEvent, EmittedInvalidation, recording
from .worker.router import Router, default_router

__all__ = ["Emits", "EmittedEvent", "EmittedInvalidation", "capture_emits"]


@dataclass
class Emits:
    """What was sent while :func:`capture_emits` was open, in the order it was sent.

    ``all`` holds :class:`EmittedEvent` (bus events) and :class:`EmittedInvalidation`
    (``depcache.invalidate`` tasks); the properties pick them out.
    """

    all: list[Emitted] = field(default_factory=list)

    @property
    def events(self) -> list[EmittedEvent]:
        """The bus events, in the order they were sent."""
        return [item for item in self.all if isinstance(item, EmittedEvent)]

    @property
    def event_names(self) -> list[str]:
        """The names of the bus events, in the order they were sent."""
        return [item.event for item in self.events]

    @property
    def invalidations(self) -> list[EmittedInvalidation]:
        """The ``depcache.invalidate`` tasks, in the order they were sent."""
        return [item for item in self.all if isinstance(item, EmittedInvalidation)]

    def invalidated(self, router: Router | None = None) -> list[str]:
        """The dependencies the worker would invalidate for all of it, without duplicates, in
        first-sent order: each invalidation's, and each event's as ``router`` maps it (its
        handlers' output and the event's own ``dependencies``; None: the default router, where
        :func:`~depcache_celery.on_event` registers).

        Raises:
            EventError: an event the router cannot map (the worker would dead-letter it).
        """
        routing = router if router is not None else default_router
        seen: dict[str, None] = {}
        for item in self.all:
            if isinstance(item, EmittedEvent):
                deps = routing.dependencies_for(item.event, item.data, item.dependencies)
            else:
                deps = item.dependencies
            seen.update(dict.fromkeys(deps))
        return list(seen)

    def clear(self) -> None:
        """Forget what was recorded so far (recording goes on)."""
        self.all.clear()

    def __len__(self) -> int:
        return len(self.all)


@contextmanager
def capture_emits() -> Iterator[Emits]:
    """Record, instead of sending, everything the app emits inside the block (see the module).

    Yields an :class:`Emits` that fills as sends happen: a deferred send when its transaction
    commits. What is sent after the block (a transaction that commits later) goes to the
    broker as usual. Captures are process-wide: sends from other threads are recorded too;
    nested captures each record everything.
    """
    with recording() as sink:
        yield Emits(sink)
