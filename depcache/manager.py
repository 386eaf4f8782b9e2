"""CacheManager: one named cache (a prefix on a backend), its manual operations and events.

Every operation exists twice: ``get`` for sync code and ``aget`` for async code. The pair
shares its encoding, decoding and events; only the backend call differs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from . import observe
from .announce import Announcer
from .backends.base import AsyncCacheBackend, CacheBackend, Subscription
from .call._entry import CorruptEntry, decode_entry, encode_entry, encode_exception
from .call._flights import AsyncFlights, SyncFlights
from .config import ConfigBase
from .events import CacheCallback, CacheEvent, CacheEventType, EventEmitter
from .factories import pair_backends
from .l1._listener import listen
from .l1._local import LocalCache
from .serializers import BaseSerializer, serializer_from_config

__all__ = ["CacheManager"]

logger = logging.getLogger("depcache")


class CacheManager:
    """A cache with dependency tracking on a pluggable backend.

    Args:
        config: settings (default: ``RedisConfig()`` from the environment, or in-memory
            backends with ``DEP_CACHE_BACKEND=memory``).
        name: registry name (default: ``config.prefix``).
        backend / async_backend: backends to use; a missing one is derived from the other
            (same store), or from the configuration.
        serializer: a serializer instance (default: from ``config.serializer_class``).

    Operations raise :class:`~depcache.errors.BackendError` when the backend fails and
    :class:`~depcache.errors.SerializationError` for values the serializer cannot store.
    """

    def __init__(
        self,
        config: ConfigBase | None = None,
        name: str | None = None,
        backend: CacheBackend | None = None,
        async_backend: AsyncCacheBackend | None = None,
        serializer: BaseSerializer | None = None,
    ) -> None:
        if config is None:
            source = backend or async_backend
            config = source.config if source is not None else ConfigBase()
        self.config = config
        self._name = name
        self.serializer = serializer or serializer_from_config(config)
        self.backend, self.async_backend = pair_backends(config, backend, async_backend)
        self.events = EventEmitter(silent=config.callback_error_silent, name=self.name)
        announcer = Announcer(self.name, self.prefix)
        #: The Redis pub/sub channel on which every invalidation of this manager is announced
        #: (see ``depcache.announce`` for the message schema).
        self.invalidation_channel = announcer.channel
        for each in (self.backend, self.async_backend, getattr(self.async_backend, "sync", None)):
            if each is not None:
                each.announcer = announcer
        self.sync_flights = SyncFlights() if config.single_flight else None
        self.async_flights = AsyncFlights() if config.single_flight else None
        #: The in-process cache (None unless ``l1_size`` is set), and what keeps it coherent.
        self.l1: LocalCache | None = None
        self._listener: Subscription | None = None
        if config.l1_size and config.cache_enabled:
            self.l1 = LocalCache(config.l1_size, config.l1_max_age)
            self._listener = listen(self.backend, self.invalidation_channel, self.l1)

    @property
    def name(self) -> str:
        """The registry name (``config.prefix`` unless given)."""
        return self._name or self.config.prefix

    @property
    def prefix(self) -> str:
        """The key prefix."""
        return self.config.prefix

    @property
    def enabled(self) -> bool:
        """False when caching is disabled (``DEP_CACHE_ENABLED=false``)."""
        return self.config.cache_enabled

    def __repr__(self) -> str:
        return f"<CacheManager {self.name!r} prefix={self.prefix!r} {type(self.backend).__name__}>"

    # -- shared encoding -----------------------------------------------------------------------
    def _encode(self, value: Any, dependencies: Iterable[str] | None) -> tuple[bytes, list[str]]:
        deps = sorted(set(dependencies or ()))
        by_manager = {self.prefix: deps}  # by namespace, as the frames collect them
        if isinstance(value, BaseException):
            return encode_exception(self.serializer, value, by_manager), deps
        return encode_entry(self.serializer, value, by_manager), deps

    def _decode(
        self, key: str, blob: bytes | None, default: Any, exception_types: tuple[type[Any], ...]
    ) -> tuple[bool, Any]:
        if blob is None:
            return False, default
        try:
            entry = decode_entry(self.serializer, blob, exception_types)
        except CorruptEntry as exc:
            logger.warning("depcache entry %s is unreadable: %s", key, exc)
            return False, default
        return True, entry.exception if entry.exception is not None else entry.value

    def _forget(self, *keys: str) -> None:
        if self.l1 is not None:
            for key in keys:
                self.l1.discard(key)

    def _forget_all(self) -> None:
        if self.l1 is not None:
            self.l1.flush(active=self.l1.active)

    def _event(self, kind: CacheEventType, key: str, **fields: Any) -> CacheEvent | None:
        return CacheEvent(kind, key, **fields) if self.events.active else None

    # -- sync operations -----------------------------------------------------------------------
    def _emit(self, event: CacheEvent | None) -> None:
        if event is not None:
            self.events.emit(event)

    def set(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        dependencies: Iterable[str] | None = None,
    ) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, indexed by ``dependencies``."""
        if not self.enabled:
            return
        blob, deps = self._encode(value, dependencies)
        self._forget(key)
        self.backend.store(key, blob, ttl, deps, None)
        self._emit(
            self._event(CacheEventType.SET, key, value=value, dependencies=set(deps), ttl=ttl)
        )

    def get(self, key: str, default: Any = None, exception_types: Iterable[type[Any]] = ()) -> Any:
        """The value stored under ``key``, or ``default``. A stored exception is returned only
        if its type is in ``exception_types`` (or a subclass); otherwise ``default``."""
        if not self.enabled:
            return default
        found, value = self._decode(key, self.backend.get(key), default, tuple(exception_types))
        self._emit(
            self._event(
                CacheEventType.HIT if found else CacheEventType.MISS,
                key,
                value=value if found else None,
            )
        )
        return value

    def delete(self, *keys: str) -> int:
        """Delete entries; return how many existed."""
        if not self.enabled:
            return 0
        self._forget(*keys)
        count = self.backend.delete(*keys)
        self._emit(self._event(CacheEventType.DELETE, ",".join(keys), count=count))
        return count

    def clear(self, pattern: str = "*") -> int:
        """Delete entries whose key matches the glob ``pattern``; return how many."""
        if not self.enabled:
            return 0
        self._forget_all()
        count = self.backend.clear(pattern)
        self._emit(self._event(CacheEventType.CLEAR, pattern, count=count))
        return count

    def invalidate_dependency(self, dependency: str) -> int:
        """Delete every entry that depends on ``dependency``; return how many."""
        return self.invalidate_dependencies(dependency)

    def invalidate_dependencies(self, *dependencies: str) -> int:
        """Invalidate several dependencies in one atomic step; return entries removed."""
        deps = _check_deps(dependencies)
        if not self.enabled or not deps:
            return 0
        if observe.state.on:  # metrics or tracing installed
            return observe.invalidation_sync(self, deps, lambda: self._invalidate(deps))
        return self._invalidate(deps)

    def _invalidate(self, deps: list[str]) -> int:
        count = self.backend.invalidate_dependencies(deps)
        if self.l1 is not None:  # at once; the announcement echoes back later
            self.l1.invalidate(deps)
        self._emit(
            self._event(
                CacheEventType.INVALIDATE, ",".join(deps), count=count, dependencies=set(deps)
            )
        )
        return count

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an entry."""
        return self.enabled and self.backend.exists(key)

    def ttl(self, key: str) -> int:
        """Seconds left for ``key``: -1 without expiry, -2 when missing."""
        return self.backend.ttl(key) if self.enabled else -2

    def close(self) -> None:
        """Release the sync backend's connections and stop the L1 listener."""
        if self._listener is not None:
            self._listener.stop()
        self.backend.close()

    # -- async operations ----------------------------------------------------------------------
    async def _aemit(self, event: CacheEvent | None) -> None:
        if event is not None:
            await self.events.aemit(event)

    async def aset(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        dependencies: Iterable[str] | None = None,
    ) -> None:
        """Async :meth:`set`."""
        if not self.enabled:
            return
        blob, deps = self._encode(value, dependencies)
        self._forget(key)
        await self.async_backend.store(key, blob, ttl, deps, None)
        await self._aemit(
            self._event(CacheEventType.SET, key, value=value, dependencies=set(deps), ttl=ttl)
        )

    async def aget(
        self, key: str, default: Any = None, exception_types: Iterable[type[Any]] = ()
    ) -> Any:
        """Async :meth:`get`."""
        if not self.enabled:
            return default
        blob = await self.async_backend.get(key)
        found, value = self._decode(key, blob, default, tuple(exception_types))
        await self._aemit(
            self._event(
                CacheEventType.HIT if found else CacheEventType.MISS,
                key,
                value=value if found else None,
            )
        )
        return value

    async def adelete(self, *keys: str) -> int:
        """Async :meth:`delete`."""
        if not self.enabled:
            return 0
        self._forget(*keys)
        count = await self.async_backend.delete(*keys)
        await self._aemit(self._event(CacheEventType.DELETE, ",".join(keys), count=count))
        return count

    async def aclear(self, pattern: str = "*") -> int:
        """Async :meth:`clear`."""
        if not self.enabled:
            return 0
        self._forget_all()
        count = await self.async_backend.clear(pattern)
        await self._aemit(self._event(CacheEventType.CLEAR, pattern, count=count))
        return count

    async def ainvalidate_dependency(self, dependency: str) -> int:
        """Async :meth:`invalidate_dependency`."""
        return await self.ainvalidate_dependencies(dependency)

    async def ainvalidate_dependencies(self, *dependencies: str) -> int:
        """Async :meth:`invalidate_dependencies`."""
        deps = _check_deps(dependencies)
        if not self.enabled or not deps:
            return 0
        if observe.state.on:  # metrics or tracing installed
            return await observe.invalidation_async(self, deps, lambda: self._ainvalidate(deps))
        return await self._ainvalidate(deps)

    async def _ainvalidate(self, deps: list[str]) -> int:
        count = await self.async_backend.invalidate_dependencies(deps)
        if self.l1 is not None:
            self.l1.invalidate(deps)
        await self._aemit(
            self._event(
                CacheEventType.INVALIDATE, ",".join(deps), count=count, dependencies=set(deps)
            )
        )
        return count

    async def aexists(self, key: str) -> bool:
        """Async :meth:`exists`."""
        return self.enabled and await self.async_backend.exists(key)

    async def attl(self, key: str) -> int:
        """Async :meth:`ttl`."""
        return await self.async_backend.ttl(key) if self.enabled else -2

    async def aclose(self) -> None:
        """Release the async backend's connections (of the running event loop)."""
        await self.async_backend.close()

    # -- events ----------------------------------------------------------------------------------
    def on_event(self, event_type: CacheEventType, callback: CacheCallback) -> None:
        """Call ``callback(event)`` on every event of ``event_type``."""
        self.events.on(event_type, callback)

    def on_all_events(self, callback: CacheCallback) -> None:
        """Call ``callback(event)`` on every event."""
        self.events.on_all(callback)

    def remove_event_callback(self, event_type: CacheEventType, callback: CacheCallback) -> bool:
        """Unregister a callback added with :meth:`on_event`."""
        return self.events.off(event_type, callback)

    def remove_all_events_callback(self, callback: CacheCallback) -> bool:
        """Unregister a callback added with :meth:`on_all_events`."""
        return self.events.off_all(callback)

    def clear_all_event_callbacks(self) -> None:
        """Unregister every callback."""
        self.events.clear()


def _check_deps(dependencies: Iterable[str]) -> list[str]:
    deps = list(dependencies)
    for dep in deps:
        if not isinstance(dep, str) or not dep:
            raise TypeError(f"dependencies must be non-empty strings, got {dep!r}")
    return deps
