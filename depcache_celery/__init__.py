"""depcache_celery: the Celery worker that fans domain events out to depcache managers.

Not implemented yet (see the open issue "depcache_celery: a worker that fans domain events
out"); importing it only makes the package layout visible.
"""

from __future__ import annotations

__all__: list[str] = []
