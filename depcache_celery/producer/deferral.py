"""Deferring emission until the database transaction commits.

Invalidating before a transaction commits lets a reader re-cache the old row between the
invalidation and the commit. So :func:`~depcache_celery.emit`,
:func:`~depcache_celery.invalidate_later` and :func:`~depcache_celery.invalidates` do not send
at once when a transaction is open; they hand the send to the first of these that takes it:

1. an open :func:`deferred` block (any stack): sent when the outermost block exits normally,
   discarded when it exits with an exception;
2. the registered commit hooks, in order: Django's ``transaction.on_commit`` (built in, used when
   Django is imported and an atomic block is open), SQLAlchemy sessions tracked with
   :func:`depcache_celery.sqlalchemy.track`, and any hook of yours
   (:func:`register_commit_hook`);
3. nobody: it is sent now.

A rolled-back transaction discards what it deferred. Sends that run after a commit and fail are
logged at ERROR (the commit cannot be undone); for a guarantee that survives a crash between the
commit and the send, write events to an outbox table in the same transaction.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = [
    "CommitHook",
    "Send",
    "defer_or_send",
    "deferred",
    "register_commit_hook",
    "run_sends",
    "try_defer",
    "unregister_commit_hook",
]

logger = logging.getLogger(__name__)

Send = Callable[[], None]
"""One deferred emission: publishes when called."""

CommitHook = Callable[[Send], bool]
"""Given a send, returns True when it took it (to run after the current commit), else False."""

_scope: ContextVar[list[Send] | None] = ContextVar("depcache_celery_deferred", default=None)
_hooks: list[CommitHook] = []
_hooks_lock = threading.Lock()


def run_sends(sends: list[Send], where: str) -> None:
    """Run deferred ``sends`` in order; log (never raise) those that fail, so one failure does
    not drop the others."""
    for send in sends:
        try:
            send()
        except Exception:
            logger.exception("depcache_celery: a send deferred until %s failed", where)


@contextmanager
def deferred() -> Iterator[list[Send]]:
    """Collect emissions made inside the block; send them when the outermost block exits
    normally, discard them when it exits with an exception.

    Yields the list of pending sends (for inspection). Nested blocks join the outer one: what an
    inner block collected is sent with the outer block, or discarded if the inner block fails.
    """
    outer = _scope.get()
    pending: list[Send] = []
    token = _scope.set(pending)
    try:
        yield pending
    except BaseException:
        pending.clear()
        raise
    finally:
        _scope.reset(token)
    if outer is not None:
        outer.extend(pending)
    else:
        sends = list(pending)
        pending.clear()
        run_sends(sends, "the end of a deferred() block")


def register_commit_hook(hook: CommitHook) -> None:
    """Add ``hook`` (see :data:`CommitHook`) after the built-in ones; adding it twice is a no-op."""
    with _hooks_lock:
        if hook not in _hooks:
            _hooks.append(hook)


def unregister_commit_hook(hook: CommitHook) -> bool:
    """Remove ``hook``; True when it was registered."""
    with _hooks_lock:
        if hook in _hooks:
            _hooks.remove(hook)
            return True
        return False


def _django_hook(send: Send) -> bool:
    """Defer to Django's ``transaction.on_commit`` when Django is in use and an atomic block is
    open on the default database. Never imports Django itself."""
    if "django.db" not in sys.modules:
        return False
    try:
        transaction: Any = importlib.import_module("django.db.transaction")

        if not transaction.get_connection().in_atomic_block:
            return False
    except Exception:  # Django imported but not configured: not in a transaction
        return False
    transaction.on_commit(lambda: run_sends([send], "a Django commit"))
    return True


def try_defer(send: Send) -> bool:
    """Hand ``send`` to whatever defers it (see the module's docstring); False when nothing
    does (then the caller sends it now)."""
    scope = _scope.get()
    if scope is not None:
        scope.append(send)
        return True
    if _django_hook(send):
        return True
    with _hooks_lock:
        hooks = list(_hooks)
    return any(hook(send) for hook in hooks)


def defer_or_send(send: Send) -> bool:
    """Hand ``send`` to whatever defers it, or run it now.

    Returns True when it was deferred, False when it ran now (its exceptions propagate then).
    """
    if try_defer(send):
        return True
    send()
    return False
