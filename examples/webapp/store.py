"""The example's database: a table of users in SQLite (the file named by WEBAPP_DB)."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

SEED = {1: "Ada", 2: "Grace"}


def path() -> Path:
    """The database file: WEBAPP_DB, else ``depcache-webapp.sqlite3`` in the temp directory."""
    return Path(
        os.environ.get("WEBAPP_DB") or Path(tempfile.gettempdir(), "depcache-webapp.sqlite3")
    )


def _connect() -> sqlite3.Connection:
    conn = sqlite3.connect(path(), timeout=10)
    conn.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    conn.executemany("INSERT OR IGNORE INTO users (id, name) VALUES (?, ?)", sorted(SEED.items()))
    conn.commit()
    return conn


def get_user(user_id: int) -> dict[str, object] | None:
    """The user's row, or None."""
    with closing(_connect()) as conn:
        row = conn.execute("SELECT id, name FROM users WHERE id = ?", (user_id,)).fetchone()
    return None if row is None else {"id": row[0], "name": row[1]}


def rename_user(user_id: int, name: str) -> bool:
    """Rename a user (committed when this returns); False when there is no such user."""
    with closing(_connect()) as conn, conn:
        cursor = conn.execute("UPDATE users SET name = ? WHERE id = ?", (name, user_id))
    return cursor.rowcount == 1
