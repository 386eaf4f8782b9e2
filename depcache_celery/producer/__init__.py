"""The producer side: what an app's processes call to send events and invalidations.

- ``emit.py``         :func:`~depcache_celery.emit` / ``aemit`` / ``invalidate_later``:
  publish to the bus or send the ``depcache.invalidate`` task;
- ``deferral.py``     waiting for the commit: ``deferred()``, Django, commit hooks;
- ``sqlalchemy.py``   the SQLAlchemy commit hook (public as :mod:`depcache_celery.sqlalchemy`);
- ``invalidates.py``  ``@invalidates``: invalidate after a function succeeds;
- ``forward.py``      ``forward_invalidations``: a manager's invalidations, sent to the worker;
- ``database.py``     ``publish_database_writes``: what instrumented databases commit.
"""
