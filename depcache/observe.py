"""Instrumentation hooks: what metrics (:mod:`depcache.metrics`) and tracing
(:mod:`depcache.tracing`) see of decorated calls and invalidations.

Nothing here runs until an :class:`Instrument` is installed: the decorator and the manager check
one flag (:data:`state`) and take their usual path while it is off, so a hit costs what it cost
without instrumentation. Once one is installed:

- each decorated call runs inside :func:`call_sync` / :func:`call_async`, which give the
  instruments a :class:`CallProbe` before and after the call; the probe learns what happened
  (hit or miss, stored, store refused by the stale-set guard, errors) from the manager's cache
  events (:func:`depcache.events.observe_all`), which the cache flow yields as it goes;
- each invalidation of a manager runs inside :func:`invalidation_sync` /
  :func:`invalidation_async`, with an :class:`InvalidationProbe`.

Instruments must not raise; one that does is logged and the call goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from .events import CacheEvent, CacheEventType, observe_all, unobserve_all

if TYPE_CHECKING:
    from .call._spec import CallSpec
    from .manager import CacheManager

__all__ = [
    "CallProbe",
    "Instrument",
    "InvalidationProbe",
    "call_async",
    "call_sync",
    "install",
    "installed",
    "invalidation_async",
    "invalidation_sync",
    "state",
    "uninstall",
]

logger = logging.getLogger("depcache")


class _State:
    """``on`` is True while an instrument is installed (read on every decorated call)."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = False


state = _State()
"""The flag the hot paths read."""


class CallProbe:
    """One decorated call, as the instruments see it.

    ``result`` is ``"hit"`` or ``"miss"`` (``None`` until the lookup, e.g. when it failed);
    ``stored`` and ``refused`` say what became of a miss's result; ``errors`` counts backend and
    serialization errors (raised or silenced); ``duration`` (seconds) is set when it ended.
    ``handles`` is where instruments keep their own state (a span, ...).
    """

    __slots__ = (
        "duration",
        "errors",
        "function",
        "handles",
        "key",
        "manager",
        "refused",
        "result",
        "started",
        "stored",
    )

    def __init__(self, manager: str, function: str, key: str) -> None:
        self.manager = manager
        self.function = function
        self.key = key
        self.result: str | None = None
        self.stored = False
        self.refused = False
        self.errors = 0
        self.started = time.perf_counter()
        self.duration = 0.0
        self.handles: dict[int, Any] = {}


class InvalidationProbe:
    """One invalidation of one manager: its name, prefix, configuration, dependencies and, when
    it ended, ``removed`` entries and ``duration`` (seconds)."""

    __slots__ = (
        "config",
        "dependencies",
        "duration",
        "handles",
        "manager",
        "prefix",
        "removed",
        "started",
    )

    def __init__(self, manager: CacheManager, dependencies: Sequence[str]) -> None:
        self.manager = manager.name
        self.prefix = manager.prefix
        self.config = manager.config
        self.dependencies = list(dependencies)
        self.removed = 0
        self.started = time.perf_counter()
        self.duration = 0.0
        self.handles: dict[int, Any] = {}


class Instrument(Protocol):
    """What metrics and tracing implement (see the module's docstring)."""

    def call_started(self, probe: CallProbe) -> None:
        """A decorated call starts (in the caller's context)."""

    def call_finished(self, probe: CallProbe, error: BaseException | None) -> None:
        """It ended, returning (``error`` None) or raising ``error``."""

    def invalidation_started(self, probe: InvalidationProbe) -> None:
        """An invalidation of one manager starts."""

    def invalidation_finished(self, probe: InvalidationProbe, error: BaseException | None) -> None:
        """It ended."""


_lock = threading.Lock()
_instruments: list[Instrument] = []
_current: ContextVar[CallProbe | None] = ContextVar("depcache_call_probe", default=None)


def install(instrument: Instrument) -> None:
    """Start giving calls and invalidations to ``instrument`` (once, however often called)."""
    with _lock:
        if instrument in _instruments:
            return
        _instruments.append(instrument)
        observe_all(_on_event)
        state.on = True


def uninstall(instrument: Instrument) -> None:
    """Stop; with no instrument left, the hot paths are back to their plain selves."""
    with _lock:
        if instrument in _instruments:
            _instruments.remove(instrument)
        if not _instruments:
            state.on = False
            unobserve_all(_on_event)


def installed() -> list[Instrument]:
    """The instruments installed, in order."""
    with _lock:
        return list(_instruments)


def _on_event(event: CacheEvent) -> None:
    probe = _current.get()
    if probe is None:
        return
    kind = event.event_type
    if kind is CacheEventType.HIT:
        probe.result = "hit"
    elif kind is CacheEventType.MISS:
        probe.result = "miss"
    elif kind is CacheEventType.SET:
        probe.stored = True
    elif kind is CacheEventType.REFUSED:
        probe.refused = True
    elif kind is CacheEventType.ERROR:
        probe.errors += 1


def _each(method: str, *args: Any) -> None:
    for instrument in list(_instruments):
        try:
            getattr(instrument, method)(*args)
        except Exception:
            logger.exception("depcache: instrument %r failed in %s", instrument, method)


def _function_name(spec: CallSpec) -> str:
    func = spec.func
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"


def call_sync(spec: CallSpec, manager: CacheManager, key: str, call: Callable[[], Any]) -> Any:
    """Run ``call`` (one decorated call of ``spec`` on ``manager``) under the instruments."""
    probe = CallProbe(manager.name, _function_name(spec), key)
    token = _current.set(probe)
    _each("call_started", probe)
    error: BaseException | None = None
    try:
        return call()
    except BaseException as exc:
        error = exc
        raise
    finally:
        probe.duration = time.perf_counter() - probe.started
        _current.reset(token)
        _each("call_finished", probe, error)


async def call_async(
    spec: CallSpec, manager: CacheManager, key: str, call: Callable[[], Awaitable[Any]]
) -> Any:
    """:func:`call_sync` for a coroutine function."""
    probe = CallProbe(manager.name, _function_name(spec), key)
    token = _current.set(probe)
    _each("call_started", probe)
    error: BaseException | None = None
    try:
        return await call()
    except BaseException as exc:
        error = exc
        raise
    finally:
        probe.duration = time.perf_counter() - probe.started
        _current.reset(token)
        _each("call_finished", probe, error)


def invalidation_sync(
    manager: CacheManager, dependencies: Sequence[str], run: Callable[[], int]
) -> int:
    """Run ``run`` (an invalidation of ``dependencies`` on ``manager``) under the
    instruments; return what it removed."""
    probe = InvalidationProbe(manager, dependencies)
    token = _current.set(None)  # not part of an enclosing call's lookup
    _each("invalidation_started", probe)
    error: BaseException | None = None
    try:
        probe.removed = run()
        return probe.removed
    except BaseException as exc:
        error = exc
        raise
    finally:
        probe.duration = time.perf_counter() - probe.started
        _current.reset(token)
        _each("invalidation_finished", probe, error)


async def invalidation_async(
    manager: CacheManager, dependencies: Sequence[str], run: Callable[[], Awaitable[int]]
) -> int:
    """:func:`invalidation_sync` for the async twin."""
    probe = InvalidationProbe(manager, dependencies)
    token = _current.set(None)
    _each("invalidation_started", probe)
    error: BaseException | None = None
    try:
        probe.removed = await run()
        return probe.removed
    except BaseException as exc:
        error = exc
        raise
    finally:
        probe.duration = time.perf_counter() - probe.started
        _current.reset(token)
        _each("invalidation_finished", probe, error)
