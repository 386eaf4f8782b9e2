"""The statement analyser: placeholders, what a template reads and writes, caching."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("sqlglot")

from depcache.db.analyser import Condition, Control, Equality, Value, analyse
from depcache.db.sqltext import first_keyword, mark_placeholders


@pytest.mark.parametrize(
    ("sql", "style", "escaped", "marked", "keys"),
    [
        ("a = %s AND b = %(b)s", "pyformat", True, "a = %(p0)s AND b = %(p1)s", (0, "b")),
        ("a LIKE 'x%%' AND b = %s", "format", True, "a LIKE 'x%' AND b = %(p0)s", (0,)),
        ("a LIKE 'x%%'", "format", False, "a LIKE 'x%%'", ()),  # sent without parameters
        (
            "a = ? AND b = '?' AND c = ?",
            "qmark",
            True,
            "a = %(p0)s AND b = '?' AND c = %(p1)s",
            (0, 1),
        ),
        ("a = :x AND b::int = :y", "named", True, "a = %(p0)s AND b::int = %(p1)s", ("x", "y")),
        ("a = $2 AND b = $1", "numeric_dollar", True, "a = %(p0)s AND b = %(p1)s", (1, 0)),
        # psycopg reads %-placeholders in quoted text too; the server-lexed styles do not
        ("b = '%%s' AND c = %s", "format", True, "b = '%s' AND c = %(p0)s", (0,)),
        ("a = $$ ? $$ AND b = ?", "qmark", True, "a = $$ ? $$ AND b = %(p0)s", (0,)),
        ('"we?ird" = ? -- ?\n', "qmark", True, '"we?ird" = %(p0)s -- ?\n', (0,)),
        ("/* ? /* ? */ */ ?", "qmark", True, "/* ? /* ? */ */ %(p0)s", (0,)),
        ("E'it\\'s ?' = ?", "qmark", True, "E'it\\'s ?' = %(p0)s", (0,)),
        ("'a:b' = :b", "named", True, "'a:b' = %(p0)s", ("b",)),
    ],
)
def test_placeholders_are_found_outside_quoted_text(
    sql: str, style: str, escaped: bool, marked: str, keys: tuple[object, ...]
) -> None:
    assert mark_placeholders(sql, style, escaped) == (marked, keys)


def test_a_bad_paramstyle_is_named() -> None:
    with pytest.raises(ValueError, match="'weird'"):
        mark_placeholders("select 1", "weird", True)
    assert first_keyword("  /* hi */ -- x\n (SELECT 1)") == "SELECT"


def test_equality_in_and_or_on_one_column_narrow_through_inner_joins() -> None:
    template = analyse(
        "SELECT u.name FROM users u JOIN posts p ON p.user_id = u.id "
        "WHERE u.id = %(id)s::INTEGER AND p.kind IN ('a', 'b') AND (p.x = 1 OR p.x = 2) "
        "AND p.score > 3 AND lower(u.name) = 'x'",
        "pyformat",
    )
    (scope,) = template.scopes
    assert [t.alias for t in scope.tables] == ["u", "p"]
    conditions = {(c.column.qualifier, c.column.name): c.values for c in scope.conditions}
    assert conditions == {
        ("u", "id"): (Value("id", cast="int"),),
        ("p", "kind"): (Value(None, "a"), Value(None, "b")),
        ("p", "x"): (Value(None, 1), Value(None, 2)),
    }
    assert [(e.left.name, e.right.name) for e in scope.equalities] == [("user_id", "id")]
    assert not template.writes
    assert template.reads


def test_outer_joins_narrow_only_what_they_may() -> None:
    (scope,) = analyse(
        "SELECT * FROM a LEFT JOIN b ON b.a_id = a.id AND b.k = 5 FULL JOIN c ON c.x = a.x "
        "WHERE a.id = 1"
    ).scopes
    a, b, c = scope.tables
    assert (a.nullable, b.nullable, c.nullable) == (False, True, False)
    assert not (a.narrowable)
    assert not (b.narrowable)
    assert not (c.narrowable)
    assert (
        Condition(b_k := scope.conditions[0].column, (Value(None, 5),), origin=1)
        in scope.conditions
    )
    assert b_k.name == "k"
    assert (
        Equality(scope.equalities[0].left, scope.equalities[0].right, origin=1) in scope.equalities
    )


def test_what_cannot_narrow_reads_whole_tables_or_refuses() -> None:
    subquery = analyse("SELECT * FROM a WHERE a.id IN (SELECT b.a_id FROM b WHERE b.k = 1)")
    assert len(subquery.scopes) == 2  # each SELECT narrows its own tables
    cte = analyse("WITH x AS (SELECT * FROM b) SELECT * FROM x JOIN a ON a.id = x.id")
    assert {t.name for s in cte.scopes for t in s.tables} == {(None, "a"), (None, "b")}
    shadow = analyse("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM b")
    assert {t.name for s in shadow.scopes for t in s.tables} == {(None, "b")}  # the real b
    recursive = analyse(
        "WITH RECURSIVE t(n) AS (SELECT id FROM nodes WHERE id = 1 UNION "
        "SELECT c.id FROM nodes c JOIN t ON c.parent = t.n) SELECT * FROM t"
    )
    assert not recursive.scopes
    assert recursive.whole_tables == {(None, "nodes")}
    assert analyse("SELECT my_fn(id) FROM a").functions == {"my_fn"}


def test_unparseable_and_procedural_statements_are_opaque(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "depcache.db"):
        for sql in (
            "SELECT * FROM WHERE",
            "CALL do_it()",
            "DO $$ BEGIN END $$",
            "ALTER TABLE a ADD x int",
        ):
            template = analyse(sql)
            assert template.opaque
            assert template.uncacheable
    assert "cannot analyse" in caplog.text
    assert analyse("ALTER TABLE a ADD y int").schema_change
    assert analyse("SHOW search_path").opaque is None


def test_writes_carry_what_names_their_rows() -> None:
    (insert,) = analyse(
        "INSERT INTO users (id, name) VALUES (%s, %s), (3, DEFAULT) RETURNING users.id", "format"
    ).writes
    assert insert.op == "insert"
    assert insert.columns == ("id", "name")
    assert insert.rows == ((Value(0), Value(1)), (Value(None, 3), None))
    assert insert.returning == ("id",)
    (update,) = analyse(
        "UPDATE users AS u SET name = %s, n = n + 1 WHERE u.id = %s", "format"
    ).writes
    assert update.op == "update"
    assert update.simple
    assert update.alias == "u"
    assert update.assignments == (("name", Value(0)), ("n", None))
    assert update.where == "u.id = %(p1)s"
    (joined,) = analyse("UPDATE users SET x = 1 FROM posts WHERE posts.u = users.id").writes
    assert not joined.simple
    (correlated,) = analyse("DELETE FROM users WHERE id IN (SELECT u FROM posts)").writes
    assert correlated.op == "delete"
    assert not correlated.simple
    (upsert,) = analyse(
        "INSERT INTO t (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = excluded.id"
    ).writes
    assert upsert.op == "unknown"
    (nothing,) = analyse("INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING").writes
    assert nothing.op == "insert"
    assert nothing.on_conflict == "nothing"
    cte = analyse("WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d")
    assert [w.op for w in cte.writes] == ["delete"]
    assert [(w.op, w.cascade) for w in analyse("TRUNCATE a, b CASCADE").writes] == [
        ("truncate", True),
        ("truncate", True),
    ]
    assert [w.op for w in analyse("COPY t FROM STDIN").writes] == ["unknown"]
    assert [w.table for w in analyse("REFRESH MATERIALIZED VIEW CONCURRENTLY s.mv").writes] == [
        ("s", "mv")
    ]


@pytest.mark.parametrize(
    ("sql", "control"),
    [
        ("COMMIT", Control("commit")),
        ("END", Control("commit")),
        ("ROLLBACK", Control("rollback")),
        ("SAVEPOINT sa_1", Control("savepoint", "sa_1")),
        ('RELEASE SAVEPOINT "Sp"', Control("release", "Sp")),
        ("ROLLBACK TO SAVEPOINT sa_1", Control("rollback_to", "sa_1")),
        ("PREPARE TRANSACTION 'x''y'", Control("prepare", "x'y")),
        ("COMMIT PREPARED 'gid'", Control("commit_prepared", "gid")),
        ("ROLLBACK PREPARED 'gid'", Control("rollback_prepared", "gid")),
        (
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            Control("isolation", "repeatable read"),
        ),
    ],
)
def test_transaction_control_is_recognised(sql: str, control: Control) -> None:
    assert analyse(sql).control == control


def test_a_template_is_parsed_once_whatever_its_parameters() -> None:
    sql = "SELECT * FROM cached_once WHERE id = %(id)s"
    before = analyse.cache_info()
    first = analyse(sql, "pyformat", True)
    assert analyse(sql, "pyformat", True) is first
    after = analyse.cache_info()
    assert after.hits - before.hits >= 1
    assert after.misses - before.misses <= 1
