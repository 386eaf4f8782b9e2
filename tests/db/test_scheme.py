"""The dependency scheme for database rows: names readers, writers and CDC must agree on."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from depcache.db import (
    any_row_dependency,
    canonical_value,
    column_dependency,
    dependencies_for,
    qualify_table,
    row_dependencies,
    table_dependency,
    unknown_rows_dependencies,
)


def test_tables_are_schema_qualified() -> None:
    assert table_dependency("users") == "db:public.users"
    assert table_dependency("billing.invoices") == "db:billing.invoices"
    assert table_dependency("invoices", schema="billing") == "db:billing.invoices"
    with pytest.raises(ValueError, match="table"):
        qualify_table("")


def test_separators_in_names_are_encoded_so_parts_stay_apart() -> None:
    assert column_dependency("a:b", "c=d", "x=y:z", schema="s.t") == ("db:s%2Et.a%3Ab:c%3Dd=x=y:z")


@pytest.mark.parametrize(
    ("value", "pg_type", "expected"),
    [
        (1, None, "1"),
        (1, "int4", "1"),
        ("01", "int8", "1"),  # PostgreSQL casts '01' to 1 for an integer column
        (Decimal("1.50"), None, "1.5"),
        ("1.50", "numeric", "1.5"),
        (Decimal("2.0"), "numeric", "2"),
        (True, None, "true"),
        ("t", "bool", "true"),
        ("off", "boolean", "false"),
        ("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        (uuid.UUID(int=1), None, "00000000-0000-0000-0000-000000000001"),
        ("Ada", None, "Ada"),
        ("Ada", "varchar", "Ada"),
        (5, "text", "5"),
    ],
)
def test_values_that_compare_equal_in_sql_get_one_name(
    value: object, pg_type: str | None, expected: str
) -> None:
    assert canonical_value(value, pg_type) == expected


@pytest.mark.parametrize(
    ("value", "pg_type"),
    [
        (None, None),  # '= NULL' matches nothing
        (1.5, None),  # floats: -0.0 = 0.0, NaN
        ("a", "citext"),  # case-insensitive equality
        ("a", "bpchar"),  # trailing blanks ignored
        ("2024-01-01", "timestamptz"),
        (Decimal("NaN"), None),
        ("x", "int4"),
        ("maybe", "bool"),
        ("not-a-uuid", "uuid"),
    ],
)
def test_values_without_a_canonical_text_do_not_narrow(value: object, pg_type: str | None) -> None:
    assert canonical_value(value, pg_type) is None
    assert column_dependency("t", "c", value, pg_type) is None


def test_a_write_invalidates_the_table_and_every_narrowable_column_of_both_images() -> None:
    deps = row_dependencies(
        "users",
        {"id": 1, "name": "Ada", "score": 1.5},
        {"id": 1, "name": "Ada Lovelace", "score": 2.5},
        types={"score": "float8"},
    )
    assert deps == {
        "db:public.users",
        "db:public.users:id=1",
        "db:public.users:name=Ada",
        "db:public.users:name=Ada Lovelace",
    }
    assert row_dependencies("users", None, {"id": 2}) == {"db:public.users", "db:public.users:id=2"}


def test_a_read_depends_on_column_values_or_falls_back_to_the_table() -> None:
    assert dependencies_for("users", {"id": [1, 2]}) == {
        "db:public.users:id=1",
        "db:public.users:id=2",
        "db:public.users:*",
    }
    assert dependencies_for("users", None) == {"db:public.users"}
    # one value that cannot narrow makes the whole condition fall back (never less)
    assert dependencies_for("users", {"score": [1, 1.5]}) == {"db:public.users"}
    # with several usable conditions one is enough (they are ANDed)
    assert dependencies_for("users", {"score": [1.5], "id": [3]}) == {
        "db:public.users:id=3",
        "db:public.users:*",
    }
    # reads and writes meet: the row a read narrows to is what its write invalidates
    read = dependencies_for("users", {"id": ["7"]}, types={"id": "int4"})
    assert read & row_dependencies("users", {"id": 7, "name": "x"}) == {"db:public.users:id=7"}


def test_a_write_that_cannot_name_its_rows_reaches_every_read_of_the_table() -> None:
    narrow = dependencies_for("users", {"name": ["Ada"]})
    wide = dependencies_for("users", None)
    unknown = unknown_rows_dependencies("users")
    assert narrow & unknown
    assert wide & unknown
    assert any_row_dependency("users") == "db:public.users:*"
    # a precise write reaches the narrowed reads of its rows only, and the wide reads
    precise = row_dependencies("users", {"id": 1, "name": "Bob"})
    assert not (narrow & precise)
    assert wide <= precise
    # a value of a narrowable type without a canonical form makes the write imprecise
    odd = row_dependencies("users", {"id": "AeI="}, types={"id": "numeric"})
    assert any_row_dependency("users") in odd
