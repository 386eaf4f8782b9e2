"""The masked Redis URL (``RedisConfig.safe_url``, ``mask_url``), shown in BackendError and so
in logs, hides every part of the password and names the server redis-py connects to: passwords
in the user info (quoted, or holding unquoted ``@ : /`` and ``%`` escapes) and in the query
string (anything, ``@ & # =`` included), with the user name kept."""

from __future__ import annotations

import string
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import parse_url

import depcache
from depcache import ConfigError, RedisConfig
from depcache.backends.redis_client import backend_error
from depcache.config import mask_url
from tests.support.strategies import examples

_USERS = st.text(string.ascii_letters + string.digits + "-._~", min_size=1, max_size=12)
_HOSTS = st.sampled_from(["127.0.0.1", "localhost", "redis-1.internal.example", "10.0.0.7"])
_PORTS = st.integers(min_value=1, max_value=65535)
#: any text, written percent-encoded
_QUOTED = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=24).map(
    lambda password: quote(password, safe="")
)
#: what a password may hold unquoted in the user info: ``@`` and ``:`` as redis-py reads them,
#: ``%`` escapes, and ``/`` (refused by RedisConfig: redis-py reads it as the end of the host)
_RAW_USERINFO = st.text(
    string.ascii_letters + string.digits + "@:/%-._~!$'()*+,;=", min_size=1, max_size=24
) | st.builds(lambda a, b: f"{a}%40{b}", st.text(string.ascii_letters, max_size=5), _USERS)
#: anything printable but spaces, unquoted after ``password=`` (``@ & # = ? /`` included)
_RAW_QUERY = st.text(string.printable.strip(), min_size=1, max_size=24)


def _shown_as(config: RedisConfig, expected: str) -> None:
    """Everything that shows the config shows the URL as ``expected``, exactly."""
    assert config.safe_url == expected
    assert config.to_dict()["url"] == expected
    assert f"url={expected!r}" in repr(config)
    error = backend_error(config, OSError("connection refused"))
    assert str(error) == f"Redis at {expected} failed: OSError: connection refused"


def _assert_server(url: str, host: str, port: int) -> None:
    """redis-py connects to ``host:port`` with this URL (the masked one names that)."""
    options = parse_url(url)
    assert (options["host"], options["port"]) == (host, port)


@examples(300)
@given(user=_USERS | st.just(""), written=_RAW_USERINFO | _QUOTED, host=_HOSTS, port=_PORTS)
def test_a_password_in_the_user_info_never_shows(
    user: str, written: str, host: str, port: int
) -> None:
    url = f"redis://{user}:{written}@{host}:{port}/0"
    expected = f"redis://{user}:***@{host}:{port}/0"
    assert mask_url(url) == expected
    if "/" in written:  # redis-py would read the host from inside the password
        with pytest.raises(ConfigError) as refused:
            RedisConfig(url=url)
        assert str(refused.value).startswith(f"Redis URL {expected!r} has an '@' after its host")
        return
    _shown_as(RedisConfig(url=url), expected)
    _assert_server(url, host, port)
    options = parse_url(url)
    assert options["password"] == unquote(written)
    assert options.get("username", "") == user


@examples(300)
@given(
    user=st.none() | _USERS,
    written=_RAW_QUERY | _QUOTED,
    before=st.sampled_from(["", "socket_timeout=2&", "db=0&"]),
    host=_HOSTS,
    port=_PORTS,
)
def test_a_password_in_the_query_string_never_shows(
    user: str | None, written: str, before: str, host: str, port: int
) -> None:
    auth = "" if user is None else f"{user}@"
    url = f"redis://{auth}{host}:{port}/0?{before}password={written}"
    expected = f"redis://{auth}{host}:{port}/0?{before}password=***"
    assert mask_url(url) == expected
    _shown_as(RedisConfig(url=url), expected)
    _assert_server(url, host, port)
    if user is not None:
        assert parse_url(url)["username"] == user


def test_the_issues_url_fails_naming_the_server_and_nothing_of_the_password(prefix: str) -> None:
    password = "p@ssw0rd-Xq7-tail"
    config = RedisConfig(
        url=f"redis://127.0.0.1:1/0?password={password}", prefix=prefix, socket_timeout=1
    )
    manager = depcache.get_or_create_cache_manager(prefix, config=config)
    with pytest.raises(depcache.BackendError) as caught:
        manager.get("k")
    message = str(caught.value)
    assert "redis://127.0.0.1:1/0?password=***" in message
    for part in ("ssw0rd", "Xq7", "tail"):
        assert part not in message


@pytest.mark.parametrize(
    "url",
    [
        "redis://app:pa/ss@127.0.0.1:6379/0",  # redis-py: host "app", port "pa"
        "redis://app:12?ss@127.0.0.1:6379/0",  # redis-py: host "app", port 12
        "redis://app:pa#ss@127.0.0.1:6379/0",
    ],
)
def test_a_url_redis_py_would_read_differently_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="percent-encode") as refused:
        RedisConfig(url=url)
    assert "redis://app:***@127.0.0.1:6379/0" in str(refused.value)
    assert "ss@" not in str(refused.value)


def test_an_at_sign_in_a_query_value_must_be_percent_encoded() -> None:
    with pytest.raises(ConfigError, match="percent-encode"):
        RedisConfig(url="redis://127.0.0.1:6379/0?client_name=a@b")
    assert RedisConfig(url="redis://127.0.0.1:6379/0?client_name=a%40b").safe_url == (
        "redis://127.0.0.1:6379/0?client_name=a%40b"
    )
