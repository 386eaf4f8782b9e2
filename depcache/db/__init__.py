"""Dependencies taken from a SQL database: read tracking, write invalidation, change streams.

``scheme`` names the dependencies (one module, shared by readers, writers, CDC and hand-written
code, so manual and automatic invalidation always meet). The integrations import optional
packages and live in their own modules: ``depcache.db.sqlalchemy``, ``depcache.db.django``
(both need ``sqlglot``, the SQL parser of :mod:`depcache.db.analyser`). After every commit of
an instrumented connection, callbacks registered with :func:`on_committed_writes` receive what
it invalidated (``depcache_celery.publish_database_writes`` registers one for the bus).
"""

from __future__ import annotations

from .hooks import CommittedWrites, on_committed_writes, remove_committed_writes_hook
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
    "CommittedWrites",
    "any_row_dependency",
    "canonical_value",
    "column_dependency",
    "dependencies_for",
    "on_committed_writes",
    "qualify_table",
    "remove_committed_writes_hook",
    "row_dependencies",
    "table_dependency",
    "unknown_rows_dependencies",
]
