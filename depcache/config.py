"""Configuration objects. Each reads the environment once, when it is constructed.

Explicit arguments win over environment variables, which win over defaults. A bad value
(argument or variable) raises :class:`~depcache.errors.ConfigError` naming it.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from .errors import ConfigError

__all__ = ["BASE_SETTINGS", "REDIS_SETTINGS", "ConfigBase", "RedisConfig", "Setting", "load_class"]

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


@dataclass(frozen=True)
class Setting:
    """One setting: its argument (and attribute) name, its environment variable, how the
    variable's text is read, its default, and what a valid value is."""

    name: str
    env: str
    parse: Callable[[str, str], Any]
    default: Any
    valid: Callable[[Any], bool] | None = None
    requirement: str = ""  # completes "<name> must be ..."
    normalize: Callable[[Any], Any] | None = None  # applied to every value (given or read)
    public: bool = True  # shown by to_dict() and repr()

    def resolve(self, given: Any, env: Mapping[str, str]) -> Any:
        """The value: ``given`` if not None, else the variable's, else the default; checked."""
        value = _pick(given, env, self.env, self.parse, self.default)
        if self.normalize is not None and value is not None:
            value = self.normalize(value)
        if self.valid is not None and value is not None and not self.valid(value):
            raise ConfigError(f"{self.name} must be {self.requirement}, got {value!r}")
        return value


def _valid_prefix(prefix: str) -> bool:
    return bool(prefix) and "{" not in prefix and "}" not in prefix


def _positive(value: float) -> bool:
    return value > 0


def _not_negative(value: float) -> bool:
    return value >= 0


#: the settings of every manager (ConfigBase), in the order to_dict() shows them
BASE_SETTINGS: tuple[Setting, ...] = (
    Setting("cache_enabled", "DEP_CACHE_ENABLED", _parse_bool, True),
    Setting("callback_error_silent", "DEP_CACHE_CALLBACK_ERROR_SILENT", _parse_bool, False),
    Setting("serializer_class", "DEP_CACHE_SERIALIZER", _optional(_keep), None),
    Setting(
        "prefix",
        "DEP_CACHE_PREFIX",
        _keep,
        "cache",
        _valid_prefix,
        "non-empty and contain no '{' or '}' (braces are Redis Cluster hash tags, which "
        "depcache manages itself)",
    ),
    Setting("cache_backend_class", "DEP_CACHE_BACKEND_CLASS", _optional(_keep), None),
    Setting("async_cache_backend_class", "DEP_CACHE_ASYNC_BACKEND_CLASS", _optional(_keep), None),
    Setting("guard_seconds", "DEP_CACHE_GUARD_SECONDS", _parse_float, 600.0, _positive, "positive"),
    Setting(
        "backend",
        "DEP_CACHE_BACKEND",
        _keep,
        "redis",
        lambda value: value in ("redis", "memory"),
        "'redis' or 'memory'",
        normalize=str.lower,
    ),
    Setting("l1_size", "DEP_CACHE_L1_SIZE", _parse_int, 0, _not_negative, "0 (off) or positive"),
    Setting("l1_max_age", "DEP_CACHE_L1_MAX_AGE", _parse_float, 30.0, _positive, "positive"),
    Setting("l1_validate", "DEP_CACHE_L1_VALIDATE", _parse_bool, False),
    Setting("single_flight", "DEP_CACHE_SINGLE_FLIGHT", _parse_bool, True),
    Setting("stampede_lock", "DEP_CACHE_STAMPEDE_LOCK", _parse_bool, False),
    Setting(
        "stampede_lock_seconds",
        "DEP_CACHE_STAMPEDE_LOCK_SECONDS",
        _parse_float,
        10.0,
        _positive,
        "positive",
    ),
)

#: what a Redis backend adds (RedisConfig); the URL is resolved apart (see RedisConfig)
REDIS_SETTINGS: tuple[Setting, ...] = (
    Setting("host", "REDIS_HOST", _keep, "localhost", public=False),
    Setting("port", "REDIS_PORT", _parse_int, 6379, public=False),
    Setting("db", "REDIS_DB", _parse_int, 0, public=False),
    Setting("password", "REDIS_PASSWORD", _optional(_keep), None, public=False),
    Setting("username", "REDIS_USERNAME", _optional(_keep), None, public=False),
    Setting("ssl", "REDIS_SSL", _parse_bool, False, public=False),
    Setting(
        "socket_timeout",
        "REDIS_SOCKET_TIMEOUT",
        _optional(_parse_float),
        None,
        _positive,
        "positive",
    ),
    Setting(
        "max_connections", "REDIS_MAX_CONNECTIONS", _parse_int, 100, lambda n: n >= 1, "at least 1"
    ),
    Setting("cluster", "REDIS_CLUSTER", _parse_bool, False),
    Setting(
        "node_check_seconds",
        "DEP_CACHE_NODE_CHECK_SECONDS",
        _parse_float,
        1.0,
        _not_negative,
        "0 (off) or positive",
    ),
)


class ConfigBase:
    """Settings shared by every backend (the table: :data:`BASE_SETTINGS`).

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
        environ: where to read the variables (default ``os.environ``).

    Raises:
        ConfigError: a value is invalid, naming the argument or variable.
    """

    #: the settings of this class, in order (subclasses add theirs)
    SETTINGS: tuple[Setting, ...] = BASE_SETTINGS

    cache_enabled: bool
    callback_error_silent: bool
    serializer_class: str | None
    prefix: str
    cache_backend_class: str | None
    async_cache_backend_class: str | None
    guard_seconds: float
    backend: str
    l1_size: int
    l1_max_age: float
    l1_validate: bool
    single_flight: bool
    stampede_lock: bool
    stampede_lock_seconds: float

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
        given = dict(locals())
        self._resolve(BASE_SETTINGS, given, environ)

    def _resolve(
        self,
        settings: tuple[Setting, ...],
        given: Mapping[str, Any],
        environ: Mapping[str, str] | None,
    ) -> None:
        env = os.environ if environ is None else environ
        for setting in settings:
            setattr(self, setting.name, setting.resolve(given.get(setting.name), env))

    def settings(self) -> dict[str, Any]:
        """Every setting of :attr:`SETTINGS` by name (credentials included: not for output)."""
        return {setting.name: getattr(self, setting.name) for setting in self.SETTINGS}

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (credentials masked)."""
        return {s.name: getattr(self, s.name) for s in self.SETTINGS if s.public}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{type(self).__name__}({fields})"


class RedisConfig(ConfigBase):
    """Settings of a Redis backend (standalone or cluster), on top of :class:`ConfigBase` (the
    table: :data:`REDIS_SETTINGS`).

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

    SETTINGS = BASE_SETTINGS + REDIS_SETTINGS

    host: str
    port: int
    db: int
    password: str | None
    username: str | None
    ssl: bool
    socket_timeout: float | None
    max_connections: int
    cluster: bool
    node_check_seconds: float

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
        given = dict(locals())
        self._resolve(self.SETTINGS, given, environ)
        self.additional_connection_kwargs: dict[str, Any] = dict(additional_connection_kwargs)
        # explicit connection arguments win over REDIS_URL from the environment
        env = os.environ if environ is None else environ
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
        return cls(**{s.name: getattr(config, s.name) for s in BASE_SETTINGS})

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
        # the path as redis-py reads it (_check_url_parts refused the URLs it would read
        # differently); a query string may hold anything, "@" and "/" included
        database = parts.path.strip("/")
        database = database if parts.scheme != "unix" else ""
        if database and not database.isdigit():
            raise ConfigError(
                f"Redis URL {self.safe_url!r}: the path must be a database number "
                f"(redis://host:6379/0), got {database!r}"
            )

    @property
    def safe_url(self) -> str:
        """The URL with any password replaced by ``***``, for logs and error messages."""
        return mask_url(self.url)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict; the password never appears (the URL is masked)."""
        shown = super().to_dict()
        base = {s.name for s in BASE_SETTINGS}
        return {
            **{k: v for k, v in shown.items() if k in base},
            "url": self.safe_url,
            **{k: v for k, v in shown.items() if k not in base},
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
