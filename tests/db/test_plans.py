"""Read plans: the dependencies of one execution, and the short path of the common condition
(``col = :param`` on an integer or text column) giving exactly what the general one gives."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from depcache.db.analyser import Value
from depcache.db.catalog import TableInfo
from depcache.db.plans import ReadPlan, _Candidate, _Narrow, _reader
from tests.support.strategies import examples

USERS = TableInfo(
    "public",
    "users",
    columns={"id": "int4", "name": "text", "score": "numeric", "token": "uuid", "on": "bool"},
    order=("id", "name", "score", "token", "on"),
    pk=("id",),
)
PREFIX = "db:public.users:c="

PARAM_VALUES = st.one_of(
    st.integers(),
    st.booleans(),
    st.text(max_size=8),
    st.sampled_from(["01", " 7", "1.50", "t", "no", "NaN", "1e3", str(uuid.UUID(int=5))]),
    st.floats(allow_nan=True),
    st.decimals(allow_nan=False, places=2, max_value=10**6, min_value=-(10**6)),
    st.none(),
    st.uuids(),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
)
TYPES = st.sampled_from(["int4", "int8", "int2", "text", "varchar", "numeric", "uuid", "bool"])


@given(pg_type=TYPES, value=PARAM_VALUES, positional=st.booleans(), missing=st.booleans())
@examples(300)
def test_the_short_path_gives_what_the_general_one_gives(
    pg_type: str, value: Any, positional: bool, missing: bool
) -> None:
    key: Any = 0 if positional else "p"
    params: Any = (
        ()
        if missing and positional
        else {}
        if missing
        else (value,)
        if positional
        else {"p": value}
    )
    fast = _reader(_Candidate("c", pg_type, (Value(key),)), PREFIX)
    # two references to one parameter never take the short path: the general one, twice
    general = _reader(_Candidate("c", pg_type, (Value(key), Value(key))), PREFIX)
    got, reference = fast(params), general(params)
    assert got == (None if reference is None else reference[:1])


def _plan(*candidates: _Candidate) -> ReadPlan:
    return ReadPlan(static=frozenset({"db:public.posts"}), narrow=(_Narrow.of(USERS, candidates),))


def test_dependencies_of_one_execution() -> None:
    by_id = _plan(_Candidate("id", "int4", (Value("i"),)))
    assert sorted(by_id.dependencies({"i": 7})) == [
        "db:public.posts",
        "db:public.users:*",
        "db:public.users:id=7",
    ]
    # an int column compared to text: by its canonical number; to a float or None: the table
    assert "db:public.users:id=1" in by_id.dependencies({"i": "01"})
    assert sorted(by_id.dependencies({"i": 1.5})) == ["db:public.posts", "db:public.users"]
    assert sorted(by_id.dependencies({"i": None})) == ["db:public.posts", "db:public.users"]
    assert sorted(by_id.dependencies({})) == ["db:public.posts", "db:public.users"]
    # the first condition that narrows wins; IN gives one per value
    either = _plan(
        _Candidate("name", "text", (Value("n"),)),
        _Candidate("id", "int4", (Value("a"), Value("b"))),
    )
    assert sorted(either.dependencies({"n": 3, "a": 1, "b": 2})) == [
        "db:public.posts",
        "db:public.users:*",
        "db:public.users:id=1",
        "db:public.users:id=2",
    ]
    assert "db:public.users:name=Ada" in either.dependencies({"n": "Ada", "a": 1, "b": 2})
    # a cast to another family, and = ANY with a list
    cast = _plan(_Candidate("id", "int4", (Value("i", cast="text"),)))
    assert "db:public.users" in cast.dependencies({"i": 1})
    many = _plan(_Candidate("score", "numeric", (Value(0, expand=True),)))
    assert {"db:public.users:score=1.5", "db:public.users:score=2"} <= set(
        many.dependencies(([Decimal("1.50"), 2],))
    )
