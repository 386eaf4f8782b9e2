"""Deferring emission until a SQLAlchemy session commits: :func:`track`, :func:`untrack`.

The public path of :mod:`depcache_celery.producer.sqlalchemy` (which see); importing it
imports SQLAlchemy.
"""

from __future__ import annotations

from .producer.sqlalchemy import track, untrack

__all__ = ["track", "untrack"]
