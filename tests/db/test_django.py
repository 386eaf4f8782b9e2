"""Django: a real project (tests/db/django_check.py) with ``depcache.db.django`` installed, on
PostgreSQL and on SQLite, each cached result checked against a fresh query after every write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django")

ROOT = Path(__file__).resolve().parents[2]


def run_check(db: str, schema: str, redis_url: str, prefix: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_CHECK_DB": db,
        "DJANGO_CHECK_SCHEMA": schema,
        "DJANGO_CHECK_REDIS": redis_url,
        "DJANGO_CHECK_PREFIX": prefix,
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "db" / "django_check.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_django_on_postgresql(pg_dsn: str, pg_schema: str, redis_url: str, prefix: str) -> None:
    report = run_check(pg_dsn, pg_schema, redis_url, prefix)
    assert report["vendor"] == "postgresql"
    assert report["checked"] > 100
    assert report["thread_errors"] == []
    # a write to customer 1 recomputed its own read, and no read of customer 2
    assert report["precision"] == {
        "pk_get2": 0,
        "by_ids(2, 3)": 0,
        "raw_name2": 0,
        "titles2": 0,
        "pk_get1": 1,
    }
    assert report["recomputed_after_rollbacks"] == 0
    assert report["recomputed_by_check_after_rollbacks"] == 0  # nothing was invalidated


def test_django_on_sqlite_at_table_level(tmp_path: Path, redis_url: str, prefix: str) -> None:
    report = run_check(str(tmp_path / "django.sqlite"), "", redis_url, prefix)
    assert report["vendor"] == "sqlite"
    assert report["checked"] > 100
    assert report["thread_errors"] == []
    assert report["precision"]["pk_get2"] == 1  # table level: every read of the table


BAD_SETTINGS = """
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=[], DEPCACHE={"pages": {"URL": "redis://x", "TTL": 5}})
django.setup()
from django.core.exceptions import ImproperlyConfigured
from depcache.db.django.settings import configure_managers
try:
    configure_managers()
except ImproperlyConfigured as exc:
    print(exc)
settings.DEPCACHE = {"default": {"BACKEND": "memory", "PREFIX": "p1"}, "pages": {"URL": "redis://h:1/0"}}
print(sorted(m.name for m in configure_managers()), [m.prefix for m in configure_managers()])
"""


def test_the_depcache_setting_makes_managers_and_names_bad_entries() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BAD_SETTINGS],
        env={**os.environ, "PYTHONPATH": str(ROOT), "DEP_CACHE_PREFIX": "cache"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    error, made = done.stdout.strip().splitlines()
    assert "DEPCACHE['pages']" in error
    assert "TTL" in error
    assert made == "['cache', 'pages'] ['p1', 'pages']"
