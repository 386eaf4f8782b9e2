"""Configuration objects. Each reads the environment once, when it is constructed.

Explicit arguments win over environment variables, which win over defaults. A bad value
(argument or variable) raises :class:`~depcache.errors.ConfigError` naming it.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from .errors import ConfigError

__all__ = ["ConfigBase", "RedisConfig", "load_class"]

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


def _parse_float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _pick(
    value: T | None,
    env: Mapping[str, str],
    name: str,
    parse: Callable[[str, str], T],
    default: T,
) -> T:
    if value is not None:
        return value
    raw = env.get(name)
    if raw is None:
        return default
    return parse(name, raw)


def _keep(_name: str, raw: str) -> str:
    return raw


def _optional(parse: Callable[[str, str], T]) -> Callable[[str, str], T | None]:
    def parse_optional(name: str, raw: str) -> T | None:
        return None if raw.strip() == "" else parse(name, raw)

    return parse_optional


def load_class(path: str, *, setting: str) -> type[Any]:
    """Import ``package.module.ClassName`` named by trusted configuration (never by cache data).

    Raises ConfigError naming ``setting`` when the path cannot be imported.
    """
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise ConfigError(f"{setting}={path!r} is not a dotted path like 'package.module.Class'")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{setting}={path!r} cannot be loaded: {exc}") from exc
    if not isinstance(cls, type):
        raise ConfigError(f"{setting}={path!r} is not a class")
    return cls


class ConfigBase:
    """Settings shared by every backend.

    Args:
        cache_enabled: ``False`` makes decorated functions call through (``DEP_CACHE_ENABLED``).
        callback_error_silent: ``True`` swallows callback errors without logging them
            (``DEP_CACHE_CALLBACK_ERROR_SILENT``, default false: they are logged).
        serializer_class: dotted path of a :class:`BaseSerializer` (``DEP_CACHE_SERIALIZER``).
        prefix: key prefix and default manager name (``DEP_CACHE_PREFIX``, default ``cache``).
        cache_backend_class: dotted path of a sync backend (``DEP_CACHE_BACKEND_CLASS``).
        async_cache_backend_class: dotted path of an async backend
            (``DEP_CACHE_ASYNC_BACKEND_CLASS``).
        guard_seconds: how long an invalidation is remembered to refuse results computed
            before it; longer computations are not stored (``DEP_CACHE_GUARD_SECONDS``, 600).
        backend: ``"redis"`` or ``"memory"``, the built-in backend used when no class is named
            (``DEP_CACHE_BACKEND``, default ``redis``).
        l1_size: entries kept in an in-process cache in front of the backend, kept coherent
            by the invalidation channel (``DEP_CACHE_L1_SIZE``, default 0: off).
        l1_max_age: seconds an in-process entry may be served at most
            (``DEP_CACHE_L1_MAX_AGE``, default 30).
        l1_validate: before serving an L1 entry, ask the backend whether it is still valid
            (one round trip, no value transferred): an invalidation made by another process
            is honoured as soon as it returned, not when its announcement arrives
            (``DEP_CACHE_L1_VALIDATE``, default false).
        single_flight: concurrent misses of one key in this process compute once
            (``DEP_CACHE_SINGLE_FLIGHT``, default true).
        stampede_lock: concurrent misses of one key across processes compute once, under a
            short Redis lock whose waiters are woken (``DEP_CACHE_STAMPEDE_LOCK``, default
            false: it costs round trips on every miss).
        stampede_lock_seconds: how long that lock is held at most, and waited for at most
            (``DEP_CACHE_STAMPEDE_LOCK_SECONDS``, default 10).

    Raises:
        ConfigError: a value is invalid, naming the argument or variable.
    """

    def __init__(
        self,
        cache_enabled: bool | None = None,
        callback_error_silent: bool | None = None,
        serializer_class: str | None = None,
        prefix: str | None = None,
        cache_backend_class: str | None = None,
        async_cache_backend_class: str | None = None,
        guard_seconds: float | None = None,
        backend: str | None = None,
        *,
        l1_size: int | None = None,
        l1_max_age: float | None = None,
        single_flight: bool | None = None,
        stampede_lock: bool | None = None,
        stampede_lock_seconds: float | None = None,
        environ: Mapping[str, str] | None = None,
        l1_validate: bool | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.stampede_lock: bool = _pick(
            stampede_lock, env, "DEP_CACHE_STAMPEDE_LOCK", _parse_bool, False
        )
        self.stampede_lock_seconds: float = _pick(
            stampede_lock_seconds, env, "DEP_CACHE_STAMPEDE_LOCK_SECONDS", _parse_float, 10.0
        )
        self.l1_size: int = _pick(l1_size, env, "DEP_CACHE_L1_SIZE", _parse_int, 0)
        self.l1_max_age: float = _pick(l1_max_age, env, "DEP_CACHE_L1_MAX_AGE", _parse_float, 30.0)
        self.l1_validate: bool = _pick(
            l1_validate, env, "DEP_CACHE_L1_VALIDATE", _parse_bool, False
        )
        self.single_flight: bool = _pick(
            single_flight, env, "DEP_CACHE_SINGLE_FLIGHT", _parse_bool, True
        )
        self.cache_enabled: bool = _pick(cache_enabled, env, "DEP_CACHE_ENABLED", _parse_bool, True)
        self.callback_error_silent: bool = _pick(
            callback_error_silent, env, "DEP_CACHE_CALLBACK_ERROR_SILENT", _parse_bool, False
        )
        self.serializer_class: str | None = _pick(
            serializer_class, env, "DEP_CACHE_SERIALIZER", _optional(_keep), None
        )
        self.prefix: str = _pick(prefix, env, "DEP_CACHE_PREFIX", _keep, "cache")
        self.cache_backend_class: str | None = _pick(
            cache_backend_class, env, "DEP_CACHE_BACKEND_CLASS", _optional(_keep), None
        )
        self.async_cache_backend_class: str | None = _pick(
            async_cache_backend_class, env, "DEP_CACHE_ASYNC_BACKEND_CLASS", _optional(_keep), None
        )
        self.guard_seconds: float = _pick(
            guard_seconds, env, "DEP_CACHE_GUARD_SECONDS", _parse_float, 600.0
        )
        self.backend: str = _pick(backend, env, "DEP_CACHE_BACKEND", _keep, "redis").lower()
        self._validate()

    def _validate(self) -> None:
        if not self.prefix or "{" in self.prefix or "}" in self.prefix:
            raise ConfigError(
                f"prefix {self.prefix!r} must be non-empty and contain no '{{' or '}}' "
                "(braces are Redis Cluster hash tags, which depcache manages itself)"
            )
        if self.guard_seconds <= 0:
            raise ConfigError(f"guard_seconds must be positive, got {self.guard_seconds!r}")
        if self.l1_size < 0:
            raise ConfigError(f"l1_size must be 0 (off) or positive, got {self.l1_size!r}")
        if self.stampede_lock_seconds <= 0:
            raise ConfigError(
                f"stampede_lock_seconds must be positive, got {self.stampede_lock_seconds!r}"
            )
        if self.l1_max_age <= 0:
            raise ConfigError(f"l1_max_age must be positive, got {self.l1_max_age!r}")
        if self.backend not in ("redis", "memory"):
            raise ConfigError(f"backend {self.backend!r} must be 'redis' or 'memory'")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (credentials masked)."""
        return {
            "cache_enabled": self.cache_enabled,
            "callback_error_silent": self.callback_error_silent,
            "serializer_class": self.serializer_class,
            "prefix": self.prefix,
            "cache_backend_class": self.cache_backend_class,
            "async_cache_backend_class": self.async_cache_backend_class,
            "guard_seconds": self.guard_seconds,
            "backend": self.backend,
            "l1_size": self.l1_size,
            "l1_max_age": self.l1_max_age,
            "l1_validate": self.l1_validate,
            "single_flight": self.single_flight,
            "stampede_lock": self.stampede_lock,
            "stampede_lock_seconds": self.stampede_lock_seconds,
        }

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{type(self).__name__}({fields})"


class RedisConfig(ConfigBase):
    """Settings of a Redis backend (standalone or cluster), on top of :class:`ConfigBase`.

    ``url`` (``REDIS_URL``) wins over ``host``/``port``/``db``/``password``/``username``/``ssl``
    (``REDIS_HOST``, ``REDIS_PORT``, ``REDIS_DB``, ``REDIS_PASSWORD``, ``REDIS_USERNAME``,
    ``REDIS_SSL``), except that any of those given as arguments wins over ``REDIS_URL``.
    ``socket_timeout`` (``REDIS_SOCKET_TIMEOUT``, seconds), ``max_connections``
    (``REDIS_MAX_CONNECTIONS``, default 100 per client; when all are busy, callers wait for one)
    and ``cluster`` (``REDIS_CLUSTER``) complete it. ``node_check_seconds``
    (``DEP_CACHE_NODE_CHECK_SECONDS``, default 1; 0: off) is how often each process reads every
    master's identity and eviction policy (``depcache/backends/watch.py``): the longest a master
    that lost data can go unnoticed. Extra keyword arguments go to redis-py.
    """

    def __init__(
        self,
        cache_enabled: bool | None = None,
        callback_error_silent: bool | None = None,
        serializer_class: str | None = None,
        prefix: str | None = None,
        cache_backend_class: str | None = None,
        async_cache_backend_class: str | None = None,
        url: str | None = None,
        host: str | None = None,
        port: int | None = None,
        db: int | None = None,
        password: str | None = None,
        username: str | None = None,
        ssl: bool | None = None,
        socket_timeout: float | None = None,
        max_connections: int | None = None,
        cluster: bool | None = None,
        guard_seconds: float | None = None,
        backend: str | None = None,
        *,
        l1_size: int | None = None,
        l1_max_age: float | None = None,
        single_flight: bool | None = None,
        stampede_lock: bool | None = None,
        stampede_lock_seconds: float | None = None,
        node_check_seconds: float | None = None,
        l1_validate: bool | None = None,
        environ: Mapping[str, str] | None = None,
        **additional_connection_kwargs: Any,
    ) -> None:
        super().__init__(
            cache_enabled=cache_enabled,
            callback_error_silent=callback_error_silent,
            serializer_class=serializer_class,
            prefix=prefix,
            cache_backend_class=cache_backend_class,
            async_cache_backend_class=async_cache_backend_class,
            guard_seconds=guard_seconds,
            backend=backend,
            l1_size=l1_size,
            l1_max_age=l1_max_age,
            single_flight=single_flight,
            stampede_lock=stampede_lock,
            stampede_lock_seconds=stampede_lock_seconds,
            environ=environ,
            l1_validate=l1_validate,
        )
        env = os.environ if environ is None else environ
        self.host: str = _pick(host, env, "REDIS_HOST", _keep, "localhost")
        self.port: int = _pick(port, env, "REDIS_PORT", _parse_int, 6379)
        self.db: int = _pick(db, env, "REDIS_DB", _parse_int, 0)
        self.password: str | None = _pick(password, env, "REDIS_PASSWORD", _optional(_keep), None)
        self.username: str | None = _pick(username, env, "REDIS_USERNAME", _optional(_keep), None)
        self.ssl: bool = _pick(ssl, env, "REDIS_SSL", _parse_bool, False)
        self.socket_timeout: float | None = _pick(
            socket_timeout, env, "REDIS_SOCKET_TIMEOUT", _optional(_parse_float), None
        )
        self.max_connections: int = _pick(
            max_connections, env, "REDIS_MAX_CONNECTIONS", _parse_int, 100
        )
        self.cluster: bool = _pick(cluster, env, "REDIS_CLUSTER", _parse_bool, False)
        self.node_check_seconds: float = _pick(
            node_check_seconds, env, "DEP_CACHE_NODE_CHECK_SECONDS", _parse_float, 1.0
        )
        self.additional_connection_kwargs: dict[str, Any] = dict(additional_connection_kwargs)
        # explicit connection arguments win over REDIS_URL from the environment
        explicit_parts = any(v is not None for v in (host, port, db, password, username, ssl))
        raw_url = url if explicit_parts else _pick(url, env, "REDIS_URL", _optional(_keep), None)
        self.url: str = raw_url if raw_url is not None else self._url_from_parts()
        self._validate_redis()

    @classmethod
    def from_config(cls, config: ConfigBase) -> RedisConfig:
        """``config`` itself if it is a RedisConfig, else one with its settings and the
        connection settings of the environment."""
        if isinstance(config, RedisConfig):
            return config
        return cls(
            cache_enabled=config.cache_enabled,
            callback_error_silent=config.callback_error_silent,
            serializer_class=config.serializer_class,
            prefix=config.prefix,
            guard_seconds=config.guard_seconds,
            l1_size=config.l1_size,
            l1_max_age=config.l1_max_age,
            single_flight=config.single_flight,
            stampede_lock=config.stampede_lock,
            stampede_lock_seconds=config.stampede_lock_seconds,
            l1_validate=config.l1_validate,
        )

    def _url_from_parts(self) -> str:
        scheme = "rediss" if self.ssl else "redis"
        auth = ""
        if self.username or self.password:
            auth = quote(self.username or "", safe="")
            if self.password:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"

    def _validate_redis(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"Redis URL {self.safe_url!r} must start with redis://, rediss:// or unix://"
            )
        _check_url_parts(self.url, self.safe_url)
        if parts.scheme != "unix" and not parts.hostname:
            raise ConfigError(f"Redis URL {self.safe_url!r} names no host")
        # after the last "@", as mask_url reads it: a password may hold an unquoted "/"
        hostpart = self.url.partition("://")[2].rpartition("@")[2]
        database = hostpart.partition("/")[2].partition("?")[0].strip("/")
        database = database if parts.scheme != "unix" else ""
        if database and not database.isdigit():
            raise ConfigError(
                f"Redis URL {self.safe_url!r}: the path must be a database number "
                f"(redis://host:6379/0), got {database!r}"
            )
        if self.socket_timeout is not None and self.socket_timeout <= 0:
            raise ConfigError(f"socket_timeout must be positive, got {self.socket_timeout!r}")
        if self.max_connections < 1:
            raise ConfigError(f"max_connections must be at least 1, got {self.max_connections!r}")
        if self.node_check_seconds < 0:
            raise ConfigError(
                f"node_check_seconds must be 0 (off) or positive, got {self.node_check_seconds!r}"
            )

    @property
    def safe_url(self) -> str:
        """The URL with any password replaced by ``***``, for logs and error messages."""
        return mask_url(self.url)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict; the password never appears."""
        return {
            **super().to_dict(),
            "url": self.safe_url,
            "socket_timeout": self.socket_timeout,
            "max_connections": self.max_connections,
            "cluster": self.cluster,
            "node_check_seconds": self.node_check_seconds,
        }


#: a query parameter whose name ends in ``password`` (``password=``, ``ssl_password=``)
_PASSWORD_PARAMETER = re.compile(r"(?i)[?&][^?&=#]*password=")


def _without_password_parameters(rest: str) -> tuple[str, str]:
    """Split the URL after its ``://`` before its first password parameter: (what comes
    before, the parameter's name with ``***`` for everything after it). A password may hold
    unquoted ``@ & # =``, so nothing after ``password=`` is shown."""
    found = _PASSWORD_PARAMETER.search(rest)
    if found is None:
        return rest, ""
    return rest[: found.start()], found.group() + "***"


def mask_url(url: str) -> str:
    """Return ``url`` with its password (if any) replaced by ``***``: in the user info (a
    password may hold unquoted ``@ : /``: everything up to the last ``@`` is user info; the
    user name, up to the first ``:``, is kept) and in a ``password=`` query parameter (all
    after it is hidden). May hide more than the password, never less."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<unparseable url>" if "@" in url or _PASSWORD_PARAMETER.search(url) else url
    rest, hidden = _without_password_parameters(rest)
    userinfo, at, hostpart = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = userinfo.split(":", 1)[0] + ":***@" + hostpart
    return f"{scheme}://{rest}{hidden}"


def _check_url_parts(url: str, safe_url: str) -> None:
    """Refuse a URL that redis-py would read differently from :func:`mask_url`: an ``@``
    after the host (a password holding an unquoted ``/ ? #``, which redis-py reads as the
    end of the host, so it would connect elsewhere and its errors would show part of the
    password), or a port that is not a number."""
    rest, _ = _without_password_parameters(url.partition("://")[2])
    host_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    if "@" in rest[host_end:]:
        raise ConfigError(
            f"Redis URL {safe_url!r} has an '@' after its host: percent-encode the password "
            "(urllib.parse.quote(password, safe='')), and any '@' in a query value as %40"
        )
    try:
        urlsplit(url).port  # noqa: B018 - parsed for its ValueError
    except ValueError:
        raise ConfigError(f"Redis URL {safe_url!r} has a port that is not a number") from None
