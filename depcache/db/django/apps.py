"""The Django app: ``INSTALLED_APPS += ["depcache.db.django"]``."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["DepcacheDatabaseConfig"]


class DepcacheDatabaseConfig(AppConfig):
    """Creates the ``DEPCACHE`` managers and instruments the database connections."""

    name = "depcache.db.django"
    label = "depcache_db"
    verbose_name = "depcache database dependencies"

    def ready(self) -> None:
        """Configure managers and hook every connection (see :mod:`depcache.db.django`)."""
        from .connection import install  # noqa: PLC0415  # the database layer, once apps load
        from .settings import configure_managers  # noqa: PLC0415

        configure_managers()
        install()
