"""Deferring emission until a SQLAlchemy session commits.

::

    from sqlalchemy.orm import sessionmaker
    import depcache_celery.sqlalchemy

    Session = sessionmaker(engine)
    depcache_celery.sqlalchemy.track(Session)

    with Session.begin() as session:
        session.execute(update(User).where(User.id == 7).values(name="Ada"))
        depcache_celery.emit("user.updated", {"id": 7})   # sent after the commit

While a session of a tracked class (a ``sessionmaker``, a ``Session`` subclass or one session)
is in a transaction in this thread or task, :func:`~depcache_celery.emit`,
:func:`~depcache_celery.invalidate_later` and :func:`~depcache_celery.invalidates` wait for it:
they are sent once it commits and discarded when it rolls back. With several tracked sessions
open at once, the one whose transaction began last holds them. A rolled-back SAVEPOINT
(``begin_nested``) does not discard what was emitted inside it; only the outer transaction's
outcome counts. Sync sessions only (an ``AsyncSession``'s events run in another context).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from .deferral import Send, register_commit_hook, run_sends

__all__ = ["track", "untrack"]

_PENDING = "depcache_celery_pending"
_active: ContextVar[tuple[Session, ...]] = ContextVar("depcache_celery_sessions", default=())
_LISTENERS = {
    "after_transaction_create": "_created",
    "after_transaction_end": "_ended",
    "after_commit": "_committed",
    "after_rollback": "_rolled_back",
}


def _created(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        active = _active.get()
        if session not in active:
            _active.set((*active, session))


def _forget(session: Session) -> None:
    active = _active.get()
    if session in active:
        _active.set(tuple(s for s in active if s is not session))


def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        _forget(session)
        session.info.pop(_PENDING, None)  # closed without a commit: nothing is sent


def _committed(session: Session) -> None:
    _forget(session)  # what the sends do is no longer inside this transaction
    pending: list[Send] = session.info.pop(_PENDING, [])
    run_sends(pending, "a SQLAlchemy commit")


def _rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _hook(send: Send) -> bool:
    for session in reversed(_active.get()):
        if session.in_transaction():
            session.info.setdefault(_PENDING, []).append(send)
            return True
    return False


def track(target: Any) -> None:
    """Defer emissions made while ``target``'s sessions are in a transaction (a
    ``sessionmaker``, a ``scoped_session``'s factory, a ``Session`` subclass or one
    ``Session``). Tracking the same target twice is a no-op."""
    register_commit_hook(_hook)
    for name, listener in _LISTENERS.items():
        function = globals()[listener]
        if not event.contains(target, name, function):
            event.listen(target, name, function)


def untrack(target: Any) -> None:
    """Stop deferring for ``target`` (the hook stays for other tracked targets)."""
    for name, listener in _LISTENERS.items():
        function = globals()[listener]
        if event.contains(target, name, function):
            event.remove(target, name, function)
