"""The event router: which dependencies a domain event invalidates.

Handlers are registered per event name, either as a function ``data -> iterable of dependency
strings``::

    @on_event("user.updated")
    def user_deps(data):
        return [f"user:{data['id']}"]

or declaratively, with templates filled from the event's data by :meth:`str.format_map`::

    on_event("user.updated", deps=["user:{id}", "posts:user:{id}"])

:func:`on_event` registers on the module's :data:`default_router`; make a :class:`Router` of
your own to keep handlers apart (``depcache_celery.install(app, router=...)``).
"""

from __future__ import annotations

import logging
import string
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

__all__ = ["EventError", "Handler", "Router", "TemplateHandler", "default_router", "on_event"]

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Iterable[str]]
"""A function from an event's data to the dependencies it invalidates."""

H = TypeVar("H", bound=Handler)


class EventError(ValueError):
    """An event cannot be turned into dependencies (bad input, missing field, failing handler).

    The message names the event; such an event is dead-lettered, never retried.
    """


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"an event name must be a string, got {type(name).__name__}")
    if not name:
        raise ValueError("an event name must not be empty")
    return name


def _template_fields(template: str) -> list[str]:
    """The top-level data fields a template reads; rejects positional fields."""
    fields: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"invalid dependency template {template!r}: {exc}") from None
    for _text, field, _spec, _conversion in parsed:
        if field is None:
            continue
        top = field.split(".", 1)[0].split("[", 1)[0]
        if not top or top.isdigit():
            raise ValueError(
                f"dependency template {template!r} has a positional field; name the data "
                "field, as in 'user:{id}'"
            )
        fields.append(top)
    return fields


class TemplateHandler:
    """A declarative handler: dependency templates filled from the event's data."""

    def __init__(self, event: str, templates: Iterable[str]) -> None:
        if isinstance(templates, str):
            raise TypeError(f"deps for event {event!r} must be a list of templates, not one string")
        self.event = event
        self.templates: tuple[str, ...] = tuple(templates)
        self._fields: list[list[str]] = []
        for template in self.templates:
            if not isinstance(template, str):
                raise TypeError(
                    f"dependency templates must be strings, got {type(template).__name__} "
                    f"for event {event!r}"
                )
            if not template:
                raise ValueError(f"empty dependency template for event {event!r}")
            self._fields.append(_template_fields(template))

    @property
    def fields(self) -> tuple[tuple[str, ...], ...]:
        """Per template, the top-level data fields it reads."""
        return tuple(tuple(fields) for fields in self._fields)

    def __call__(self, data: dict[str, Any]) -> list[str]:
        deps: list[str] = []
        for template, fields in zip(self.templates, self._fields, strict=True):
            for field in fields:
                if field not in data:
                    raise EventError(
                        f"event {self.event!r}: field {field!r} is missing from the data "
                        f"(dependency template {template!r})"
                    )
                if data[field] is None:
                    raise EventError(
                        f"event {self.event!r}: field {field!r} is null "
                        f"(dependency template {template!r})"
                    )
            try:
                deps.append(template.format_map(data))
            except KeyError as exc:
                raise EventError(
                    f"event {self.event!r}: field {exc.args[0]!r} is missing from the data "
                    f"(dependency template {template!r})"
                ) from None
            except (AttributeError, IndexError, TypeError, ValueError) as exc:
                raise EventError(
                    f"event {self.event!r}: cannot fill dependency template {template!r} "
                    f"from the data: {exc}"
                ) from None
        return deps

    def __repr__(self) -> str:
        return f"TemplateHandler({self.event!r}, {list(self.templates)!r})"


def _handler_name(handler: Handler) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


class Router:
    """Event names to handlers; turns an event into the list of dependencies to invalidate.

    Thread-safe. ``unhandled`` counts, per event name, the events that had neither a handler nor
    explicit dependencies.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[str, list[Handler]] = {}
        self.unhandled: Counter[str] = Counter()

    # -- registration ----------------------------------------------------------------------------
    @overload
    def on_event(self, name: str, deps: None = None) -> Callable[[H], H]: ...

    @overload
    def on_event(self, name: str, deps: Iterable[str]) -> TemplateHandler: ...

    def on_event(
        self, name: str, deps: Iterable[str] | None = None
    ) -> Callable[[H], H] | TemplateHandler:
        """Register a handler for event ``name``.

        Without ``deps``, returns a decorator for a function ``data -> iterable of dependency
        strings``. With ``deps`` (templates such as ``"user:{id}"``), registers them and returns
        the :class:`TemplateHandler`. An event may have several handlers; their dependencies
        add up.
        """
        name = _check_name(name)
        if deps is not None:
            handler = TemplateHandler(name, deps)
            self.add_handler(name, handler)
            return handler

        def decorate(fn: H) -> H:
            self.add_handler(name, fn)
            return fn

        return decorate

    def add_handler(self, name: str, handler: Handler) -> None:
        """Register ``handler`` for event ``name`` (the non-decorator form)."""
        name = _check_name(name)
        if not callable(handler):
            raise TypeError(f"a handler must be callable, got {handler!r}")
        with self._lock:
            self._handlers.setdefault(name, []).append(handler)

    def remove(self, name: str) -> None:
        """Forget every handler of event ``name``."""
        with self._lock:
            self._handlers.pop(name, None)

    def clear(self) -> None:
        """Forget every handler and reset the ``unhandled`` counts."""
        with self._lock:
            self._handlers.clear()
            self.unhandled.clear()

    def handlers(self, name: str) -> tuple[Handler, ...]:
        """The handlers registered for event ``name``, in registration order."""
        with self._lock:
            return tuple(self._handlers.get(name, ()))

    def events(self) -> list[str]:
        """The event names that have handlers."""
        with self._lock:
            return sorted(self._handlers)

    # -- routing ---------------------------------------------------------------------------------
    def dependencies_for(
        self,
        event: str,
        data: Mapping[str, Any],
        explicit_deps: Iterable[str] | None = None,
    ) -> list[str]:
        """The dependencies event ``event`` with ``data`` invalidates.

        The union of every handler's output and ``explicit_deps`` (a message's own
        ``dependencies``), without duplicates, in first-seen order. An event with neither a
        handler nor explicit dependencies gives ``[]``: it is logged and counted in
        ``unhandled``, not an error.

        Raises:
            EventError: invalid input (empty name, data not a dict, a dependency that is not a
                non-empty string), a template field missing from the data, or a handler that
                failed.
        """
        if not isinstance(event, str) or not event:
            raise EventError(f"an event name must be a non-empty string, got {event!r}")
        if not isinstance(data, dict):
            raise EventError(f"event {event!r}: data must be a dict, got {type(data).__name__}")
        explicit = self._explicit(event, explicit_deps)
        handlers = self.handlers(event)
        if not handlers and not explicit:
            with self._lock:
                self.unhandled[event] += 1
            logger.info("event %r has no handler and no dependencies: nothing to invalidate", event)
            return []
        deps: dict[str, None] = {}
        for handler in handlers:
            for dep in self._run(event, handler, data):
                deps[dep] = None
        for dep in explicit:
            deps[dep] = None
        for dep in deps:
            try:
                dep.encode("utf-8")
            except UnicodeEncodeError:  # e.g. a lone surrogate: Redis could not take it
                raise EventError(
                    f"event {event!r}: dependency {dep!r} is not valid Unicode text"
                ) from None
        return list(deps)

    @staticmethod
    def _explicit(event: str, explicit_deps: Iterable[str] | None) -> list[str]:
        if explicit_deps is None:
            return []
        if isinstance(explicit_deps, (str, bytes)):
            raise EventError(f"event {event!r}: dependencies must be a list of strings")
        deps = list(explicit_deps)
        for dep in deps:
            if not isinstance(dep, str) or not dep:
                raise EventError(
                    f"event {event!r}: dependencies must be non-empty strings, got {dep!r}"
                )
        return deps

    @staticmethod
    def _run(event: str, handler: Handler, data: dict[str, Any]) -> list[str]:
        try:
            output = handler(data)
            if isinstance(output, (str, bytes)):
                raise EventError(
                    f"event {event!r}: handler {_handler_name(handler)} returned a string, not "
                    "an iterable of dependency strings"
                )
            deps = list(output)
        except EventError:
            raise
        except Exception as exc:
            name = _handler_name(handler)
            raise EventError(f"event {event!r}: handler {name} failed: {exc!r}") from exc
        for dep in deps:
            if not isinstance(dep, str) or not dep:
                raise EventError(
                    f"event {event!r}: handler {_handler_name(handler)} returned {dep!r}, not a "
                    "non-empty string"
                )
        return deps


default_router = Router()
"""The router :func:`on_event` registers on, and ``install(app)`` uses by default."""


@overload
def on_event(name: str, deps: None = None) -> Callable[[H], H]: ...


@overload
def on_event(name: str, deps: Iterable[str]) -> TemplateHandler: ...


def on_event(name: str, deps: Iterable[str] | None = None) -> Callable[[H], H] | TemplateHandler:
    """Register a handler on :data:`default_router` (see :meth:`Router.on_event`)."""
    if deps is None:
        return default_router.on_event(name)
    return default_router.on_event(name, deps)
