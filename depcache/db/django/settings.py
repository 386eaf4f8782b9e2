"""``settings.DEPCACHE``: depcache managers declared like ``CACHES``.

Each entry names a manager; ``"default"`` is the manager of ``@cache_with_deps()`` without a
name (registered under ``DEP_CACHE_PREFIX``, default ``cache``). Keys:

- ``URL``: ``redis://``/``rediss://`` URL (a ``redis`` backend; the default backend);
- ``PREFIX``: key prefix (default: the manager's name);
- ``BACKEND``: ``"redis"`` (default) or ``"memory"``;
- ``CLUSTER``: True for a Redis Cluster;
- ``OPTIONS``: any other keyword of :class:`depcache.RedisConfig` (``l1_size``,
  ``socket_timeout``, ``ttl``-less settings such as ``guard_seconds``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from depcache import CacheManager, ConfigBase, RedisConfig, get_or_create_cache_manager

__all__ = ["configure_managers"]

_KEYS = frozenset({"URL", "PREFIX", "BACKEND", "CLUSTER", "OPTIONS"})


def _manager(name: str, entry: Any) -> CacheManager:
    if not isinstance(entry, Mapping):
        raise ImproperlyConfigured(f"DEPCACHE[{name!r}] must be a dict, got {type(entry).__name__}")
    unknown = set(entry) - _KEYS
    if unknown:
        raise ImproperlyConfigured(
            f"DEPCACHE[{name!r}] has unknown keys {sorted(unknown)}; expected {sorted(_KEYS)}"
        )
    options = dict(entry.get("OPTIONS") or {})
    registered = ConfigBase().prefix if name == "default" else name
    prefix = entry.get("PREFIX", registered)
    backend = entry.get("BACKEND", "redis")
    try:
        if backend == "memory":
            config: ConfigBase = ConfigBase(backend="memory", prefix=prefix, **options)
        elif backend == "redis":
            config = RedisConfig(
                url=entry.get("URL"), prefix=prefix, cluster=entry.get("CLUSTER"), **options
            )
        else:
            raise ImproperlyConfigured(
                f"DEPCACHE[{name!r}]['BACKEND'] must be 'redis' or 'memory', got {backend!r}"
            )
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"DEPCACHE[{name!r}] is invalid: {exc}") from exc
    return get_or_create_cache_manager(registered, config=config)


def configure_managers() -> list[CacheManager]:
    """Create (or find) the managers of ``settings.DEPCACHE``.

    Raises:
        ImproperlyConfigured: an entry is malformed (the message names it).
    """
    declared = getattr(settings, "DEPCACHE", {})
    if not isinstance(declared, Mapping):
        raise ImproperlyConfigured(f"DEPCACHE must be a dict, got {type(declared).__name__}")
    return [_manager(str(name), entry) for name, entry in declared.items()]
