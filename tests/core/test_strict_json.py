"""``strict_loads``: orjson's fast path reads exactly what the standard library's strict path reads.

The bus worker and the L1 listener parse every message with it, so it takes orjson first when
installed; these tests hold the two paths to the same verdict and the same values (types
included) on everything a producer could send, and show that the fast path is really taken.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from depcache import _json
from depcache.serializers.json import strict_loads
from tests.support.strategies import JSON_VALUES, bus_bodies, examples


def typed(value: Any) -> Any:
    """``value`` with every scalar's type spelled out (``1 == 1.0`` and ``True == 1`` in
    Python, not here)."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, repr(value))


def verdict(data: bytes | str, *, fast: bool) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        if not fast:
            patch.setattr(_json, "_orjson", None)
        try:
            return ("ok", typed(strict_loads(data)))
        except ValueError:
            return ("error",)


def same_verdict(data: bytes | str) -> None:
    assert verdict(data, fast=True) == verdict(data, fast=False), data


@examples(400)
@given(bus_bodies())
def test_bus_bodies_read_alike(body: bytes) -> None:
    same_verdict(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return
    same_verdict(text)


@examples(300)
@given(
    JSON_VALUES
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=4),
    st.booleans(),
)
def test_json_documents_read_alike(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    same_verdict(text)
    same_verdict(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    "data",
    [
        b"12345678901234567890123",  # beyond 64 bits: orjson would make it a float
        b'{"id": 18446744073709551616}',
        b"-9223372036854775809",
        b"9223372036854775807",
        b'"12345678901234567890123"',  # a long digit string: the slow path, same value
        b"1e999",
        b"-1E400",
        b"NaN",
        b"[Infinity]",
        b"-Infinity",
        b'"\\ud800"',  # a lone surrogate escape: orjson refuses it, the standard library not
        b"\xef\xbb\xbf{}",
        b"\xff",
        b"[" * 1500 + b"]" * 1500,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": 1, "a": 2}',
        b"-0",
        b"-0.0",
        b"1.5e-400",
        b"0.1000000000000000055511151231257827",
        b" {} ",
        b"{} x",
        b"",
        b'"a\tb"',  # raw control characters inside a string
        b'{"a": "x\ny"}',
        b'"\x00"',
        b'"\x7f"',
        b"[1,]",
        b"01",
        b"1.",
        b"+1",
        b'"\xed\xa0\x80"',  # a surrogate encoded in UTF-8 bytes
        b"\xc0\xaf",  # an overlong encoding
        b"\xc2\xa0{}",  # a no-break space is not JSON whitespace
    ],
)
def test_edge_cases_read_alike(data: bytes) -> None:
    same_verdict(data)


@pytest.mark.parametrize("data", [b'{"id": 1}', b"12345678901234567890123", b"NaN"])
def test_other_bytes_like_input_reads_as_before(data: bytes) -> None:
    """A bytearray reads as its bytes do; a memoryview, which the standard library refuses
    (TypeError), is still refused: the fast path takes only what the standard library takes."""
    same_verdict(bytearray(data))
    assert verdict(bytearray(data), fast=True) == verdict(data, fast=True)
    with pytest.raises(TypeError):
        strict_loads(memoryview(data))  # type: ignore[arg-type]


def test_integers_beyond_64_bits_stay_integers() -> None:
    assert strict_loads(b'{"id": 12345678901234567890123}') == {"id": 12345678901234567890123}
    assert isinstance(strict_loads(b"18446744073709551616"), int)


def test_the_fast_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _json.HAS_ORJSON  # the dev extra installs it

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the standard library's json was used")

    monkeypatch.setattr(json, "loads", refuse)
    assert strict_loads(b'{"event": "user.updated", "data": {"id": 123}}') == {
        "event": "user.updated",
        "data": {"id": 123},
    }
    with pytest.raises(AssertionError):  # what orjson refuses goes to the standard library
        strict_loads(b"NaN")
