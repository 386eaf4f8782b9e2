"""Django: every query of every connection tracked, every commit invalidating.

::

    INSTALLED_APPS = [..., "depcache.db.django"]
    DEPCACHE = {                                   # managers, like CACHES
        "default": {"URL": "redis://localhost:6379/0", "PREFIX": "myapp"},
        "pages": {"URL": "redis://pages:6379/0", "OPTIONS": {"l1_size": 10_000}},
    }

On start-up the app creates the managers of ``DEPCACHE`` (:mod:`.settings`) and wraps every
database connection (each thread's, as it connects) with an execute wrapper that feeds the
analyser (:mod:`depcache.db.connection`): reads inside a cached call record their
dependencies, writes are logged and invalidated once Django's commit returns (autocommit
statements at once), dropped on rollback and on rollback to a savepoint. ORM ``save()``,
``QuerySet.update()``/``delete()``, ``bulk_create`` and raw ``cursor.execute`` all pass through
it; rows are named from the database itself (see :mod:`depcache.db.tracking`).

``DEPCACHE_DATABASE_TRACKING`` tunes it: ``{"DATABASES": ["default"], "PRECISE_WRITES": True,
"ROW_LIMIT": 1000}`` (default: every alias). PostgreSQL (psycopg, psycopg2) is tracked precisely,
SQLite at table level; another database among the tracked aliases is an ``ImproperlyConfigured``
error naming it.
"""
