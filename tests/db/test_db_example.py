"""examples/db_app.py runs: no add_dependency and no emit, and the cache stays right (SQLite at
table level, PostgreSQL per row, with Redis)."""

from __future__ import annotations

from tests.docs.test_examples import example_env, run_example


def test_db_example_on_sqlite_in_memory_cache() -> None:
    out = run_example("examples/db_app.py", env=example_env())
    assert "database sqlite, cache 'db_app' on memory" in out
    assert (
        "after writing user 1: {'name': 'Ada Lovelace', 'posts': ['Analytical Engine', 'Notes']}"
        in out
    )
    # table level: both pages recomputed after a write to users
    assert out.strip().endswith("computed: ['user_page(1)', 'user_page(2)']")


def test_db_example_on_postgresql_and_redis(
    pg_dsn: str, pg_schema: str, redis_url: str, prefix: str
) -> None:
    url = pg_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    out = run_example(
        "examples/db_app.py",
        env=example_env(
            DATABASE_URL=f"{url}?options=-csearch_path%3D{pg_schema}",
            REDIS_URL=redis_url,
            DEP_CACHE_PREFIX=prefix,
        ),
    )
    assert f"database postgresql, cache '{prefix}' on redis" in out
    assert (
        "after writing user 1: {'name': 'Ada Lovelace', 'posts': ['Analytical Engine', 'Notes']}"
        in out
    )
    assert out.strip().endswith("computed: ['user_page(1)']")  # page 2 stayed cached
