"""``@invalidates("user:{user_id}")``: invalidate after a job (or any function) succeeds.

::

    @app.task
    @invalidates("user:{user_id}", "posts:user:{user_id}")
    def rename_user(user_id: int, name: str) -> None:
        ...

After the function returns, the templates are filled from its arguments by name (defaults
included; ``{user.id}`` reads an attribute) and the dependencies are invalidated:

- ``via="worker"`` (the default): sent to the worker as the ``depcache.invalidate`` task
  (:func:`~depcache_celery.invalidate_later`), which reaches every manager the worker has
  registered, on every deployment, with retries when one is down;
- ``via="local"``: :func:`depcache.invalidate` in this process, on the managers registered here
  (at once, so the caller reads its own write; an error is raised to the caller);
- ``via="both"``: locally first, then through the worker.

Nothing is invalidated when the function raises. Inside a transaction both wait for the commit
(see :mod:`depcache_celery.producer.deferral`). Async functions are supported
(``depcache.ainvalidate`` locally; the task is sent from a thread). A template naming a parameter
the function does not have is an error when decorating; a ``None`` argument is an error when
invalidating.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, cast

from celery import Celery

import depcache

from ..worker.router import TemplateHandler
from .deferral import defer_or_send, try_defer
from .emit import invalidate_later

__all__ = ["Via", "invalidates"]

Via = Literal["worker", "local", "both"]
F = TypeVar("F", bound=Callable[..., Any])


def _check_fields(fn: Callable[..., Any], handler: TemplateHandler) -> inspect.Signature:
    signature = inspect.signature(fn)
    params = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return signature
    for template, fields in zip(handler.templates, handler.fields, strict=True):
        for field in fields:
            if field not in params:
                raise ValueError(
                    f"@invalidates({template!r}) on {fn.__qualname__}: it has no parameter "
                    f"{field!r} (parameters: {', '.join(params) or 'none'})"
                )
    return signature


def invalidates(
    *templates: str,
    via: Via = "worker",
    managers: Sequence[str] | None = None,
    app: Celery | None = None,
) -> Callable[[F], F]:
    """Decorate a function so that, once it returns, the dependencies formatted from its
    arguments are invalidated (see the module's docstring).

    ``managers`` limits the invalidation to the managers of those names (locally and in the
    worker); ``app`` is the Celery app to send the task with (default: the current app).

    Raises:
        ValueError: no template, an empty or positional one, an unknown ``via``, or a field
            that is not a parameter of the function.
    """
    if not templates:
        raise ValueError("@invalidates needs at least one dependency template")
    if via not in ("worker", "local", "both"):
        raise ValueError(f"@invalidates: via must be 'worker', 'local' or 'both', got {via!r}")
    names = list(managers) if managers is not None else None

    def decorate(fn: F) -> F:
        handler = TemplateHandler(f"@invalidates on {fn.__qualname__}", templates)
        signature = _check_fields(fn, handler)

        def dependencies(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            data = dict(bound.arguments)
            for param in signature.parameters.values():
                if param.kind is inspect.Parameter.VAR_KEYWORD:
                    data.update(data.pop(param.name, {}))
            return handler(data)

        def local(deps: list[str]) -> None:
            depcache.invalidate(*deps, managers=names)

        def remote(deps: list[str]) -> None:
            invalidate_later(*deps, managers=names, app=app)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                result = await fn(*args, **kwargs)
                deps = dependencies(args, kwargs)
                if via in ("local", "both") and not try_defer(functools.partial(local, deps)):
                    await depcache.ainvalidate(*deps, managers=names)
                send = functools.partial(remote, deps)
                if via in ("worker", "both") and not try_defer(send):
                    await asyncio.to_thread(send)
                return result

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            deps = dependencies(args, kwargs)
            if via in ("local", "both"):
                defer_or_send(functools.partial(local, deps))
            if via in ("worker", "both"):
                remote(deps)
            return result

        return cast(F, wrapper)

    return decorate
