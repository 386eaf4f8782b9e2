"""A small Flask app whose endpoints are cached with depcache, a Celery worker running
depcache_celery, and a background job that updates a user and emits ``user.updated``.

- ``store.py``: the "database" (SQLite, file ``WEBAPP_DB``);
- ``cache.py``: the managers (``users`` on REDIS_URL, ``pages`` on PAGES_REDIS_URL, which may be a
  cluster: PAGES_REDIS_CLUSTER=true) and the event handler ``user.updated -> user:{id}``;
- ``jobs.py``: the background job ``webapp.rename_user`` (a shared task);
- ``worker.py``: the Celery app (``celery -A examples.webapp.worker worker``) with
  ``depcache_celery.install(app)``;
- ``app.py``: the web app (``flask --app examples.webapp.app run``).
"""
