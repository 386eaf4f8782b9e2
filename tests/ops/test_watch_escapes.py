"""``depcache watch`` prints what anyone may PUBLISH on an invalidation channel: escape
sequences in names (clear screen, window title, a carriage return forging a line, a
bidirectional override) reach the terminal escaped, never raw; ``--json`` stays valid JSON.

The real command runs as a subprocess; the crafted messages go through a real Redis PUBLISH.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis

from depcache.announce import channel_for
from depcache.terminal import printable

pytestmark = pytest.mark.redis

EVIL = {
    "clear": "\x1b[2J\x1b[H",
    "title": "\x1b]0;owned\x07",
    "csi": "\x9b31m",  # the one-byte (C1) control sequence introducer
    "line": "ok\rFAKE LINE",
    "nul-del": "a\x00b\x7fc",
    "bidi": "user:\u202e321",
    "separator": "a\u2028b",
}


def _announcement(prefix: str) -> dict[str, object]:
    return {
        "id": "\x1b[31m" + "0" * 32,
        "manager": "mgr" + EVIL["title"],
        "prefix": prefix,
        "dependencies": list(EVIL.values()),
        "origin": "host" + EVIL["clear"],
        "ts": 1764072000.5,
        "removed": 3,
    }


def _messages(prefix: str) -> list[bytes]:
    """A valid announcement carrying escapes (JSON-escaped, and as raw characters where JSON
    allows them), and unreadable ones: raw escapes in no JSON, and bytes that are not UTF-8."""
    announcement = _announcement(prefix)
    return [
        json.dumps(announcement).encode(),
        json.dumps(announcement, ensure_ascii=False).encode("utf-8"),  # raw DEL, C1, U+202E
        b"\x1b[2J\x1b]0;owned\x07 not json \r\x9b",
        b'{"dependencies": "\x1b[2J", "manager": "\xff\x1b]0;t\x07"}',
        json.dumps({**announcement, "dependencies": ["\x1b[2J", 5]}).encode(),
    ]


def _watch(redis_url: str, prefix: str, *flags: str) -> bytes:
    """Run ``depcache watch`` for this prefix, publish the crafted messages, return stdout."""
    messages = _messages(prefix)
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "depcache.cli",
            "watch",
            "--url",
            redis_url,
            "--prefix",
            prefix,
            "--count",
            str(len(messages)),
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    client = redis.Redis.from_url(redis_url)
    try:
        assert watcher.stderr is not None
        assert watcher.stderr.readline().startswith(b"watching")  # subscribed
        for message in messages:
            assert client.publish(channel_for(prefix), message) == 1
        out, err = watcher.communicate(timeout=20)
    finally:
        watcher.kill()
        watcher.communicate()
        client.close()
    assert watcher.returncode == 0, err
    return out


def _assert_no_raw_controls(out: bytes) -> str:
    text = out.decode("utf-8")  # invalid UTF-8 from the channel is not passed through either
    raw = sorted({c for c in text if c != "\n" and not c.isprintable()})
    assert not raw, f"raw control or format characters reached the terminal: {raw!r}"
    return text


def test_watch_prints_names_from_the_channel_escaped(redis_url: str, prefix: str) -> None:
    text = _assert_no_raw_controls(_watch(redis_url, prefix))
    lines = text.splitlines()
    assert len(lines) == len(_messages(prefix)), lines  # no line forged by a carriage return
    for line in lines[:2]:  # the announcements, readable, with every name visibly escaped
        assert f"  mgr{printable(EVIL['title'])}  invalidated " in line, line
        for name in EVIL.values():
            assert printable(name) in line, (name, line)
        assert f"origin={printable('host' + EVIL['clear'])}" in line
        for escaped in ("\\x1b]0;owned\\x07", "\\x9b31m", "\\u202e", "ok\\rFAKE LINE"):
            assert escaped in line  # visibly, as in a Python string literal
    assert all(line.startswith("(unreadable message: ") for line in lines[2:]), lines


def test_watch_json_is_valid_json_with_escapes(redis_url: str, prefix: str) -> None:
    text = _assert_no_raw_controls(_watch(redis_url, prefix, "--json"))
    assert text.isascii()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == len(_messages(prefix))
    assert lines[0] == lines[1] == _announcement(prefix)  # the names, exactly, once decoded
    assert lines[2]["unreadable"].startswith("\x1b[2J")  # escaped in the line, kept in the value
    assert "error" in lines[2]
    assert lines[4]["dependencies"] == ["\x1b[2J", 5]


def test_printable_escapes_what_a_terminal_acts_on() -> None:
    assert printable("user:42 é ü 用户") == "user:42 é ü 用户"
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert printable("\x07\x00\x7f\x85\x9b\r\n\t") == "\\x07\\x00\\x7f\\x85\\x9b\\r\\n\\t"
    assert printable("\u202e\u200b\u2028\u00a0") == "\\u202e\\u200b\\u2028\\xa0"
    assert printable("\U000e0001 \udcff") == "\\U000e0001 \\udcff"
    assert printable("C:\\x1b") == "C:\\\\x1b"  # a backslash in the name is not an escape
