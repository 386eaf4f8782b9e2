"""Dependencies taken from a SQL database: read tracking, write invalidation, change streams.

``scheme`` names the dependencies (one module, shared by readers, writers, CDC and hand-written
code, so manual and automatic invalidation always meet). The integrations import optional
packages and live in their own modules: ``depcache.db.sqlalchemy``, ``depcache.db.django``.
"""

from __future__ import annotations

from .scheme import (
    DEFAULT_SCHEMA,
    NARROWABLE_TYPES,
    any_row_dependency,
    canonical_value,
    column_dependency,
    dependencies_for,
    qualify_table,
    row_dependencies,
    table_dependency,
    unknown_rows_dependencies,
)

__all__ = [
    "DEFAULT_SCHEMA",
    "NARROWABLE_TYPES",
    "any_row_dependency",
    "canonical_value",
    "column_dependency",
    "dependencies_for",
    "qualify_table",
    "row_dependencies",
    "table_dependency",
    "unknown_rows_dependencies",
]
