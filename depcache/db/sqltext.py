"""Placeholders in SQL text: where the DB-API parameters go, found without parsing the SQL.

:func:`mark_placeholders` rewrites every placeholder of a DB-API paramstyle into one named
marker ``%(pN)s`` that the SQL parser reads as a placeholder, and returns which parameter each
marker stands for (a position or a name), reading the text as the driver does. The
``format``/``pyformat`` styles (psycopg, psycopg2) are read the way those drivers read them:
everywhere, quoted text included, ``%%`` being a literal ``%`` when the statement is sent with
parameters (``escaped``). For the other styles quoted text is skipped as PostgreSQL and SQLite
lex it: ``'...'`` (``''`` inside), ``E'...'`` (backslash escapes), ``"..."`` identifiers,
``$tag$...$tag$`` and comments (``--`` and nested ``/* */``).
"""

from __future__ import annotations

import re

__all__ = ["MARKER_PREFIX", "ParamKey", "first_keyword", "mark_placeholders"]

#: a parameter: its position (``%s``, ``?``, ``$1``) or its name (``%(name)s``, ``:name``)
ParamKey = int | str

#: markers are ``%(p<N>)s``: the parser reads them as placeholders named ``p<N>``
MARKER_PREFIX = "p"

STYLES = frozenset({"format", "pyformat", "qmark", "named", "numeric", "numeric_dollar"})

_IDENT_START = re.compile(r"[A-Za-z_]")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_PYFORMAT_NAMED = re.compile(r"%\(([^)]+)\)[sbt]")
_NAMED = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")
_NUMBER = re.compile(r"[0-9]+")
_KEYWORD = re.compile(r"\s*(?:(?:--[^\n]*\n)|(?:/\*.*?\*/)|\s)*\(*\s*([A-Za-z]+)", re.S)


def first_keyword(sql: str) -> str:
    """The statement's first word in upper case (after comments and opening parentheses);
    "" when there is none."""
    match = _KEYWORD.match(sql)
    return match.group(1).upper() if match else ""


def _close_quote(sql: str, i: int, quote: str, backslash: bool) -> int:
    """The index just past the span ``quote`` opens at ``i`` (a doubled ``quote`` and, with
    ``backslash``, a backslash-escaped character stay inside); ``len(sql)`` if it never closes."""
    n = len(sql)
    j = i + 1
    while j < n:
        if backslash and sql[j] == "\\":
            j += 2
            continue
        if sql[j] == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _skip_quoted(sql: str, i: int) -> int | None:  # one branch per quoting
    """If a quoted span or comment starts at ``i``, the index just past it, else None."""
    ch = sql[i]
    n = len(sql)
    if ch == "'":  # a string; E'...' also escapes with backslashes
        backslash = i > 0 and sql[i - 1] in "eE" and (i < 2 or not sql[i - 2].isalnum())
        return _close_quote(sql, i, ch, backslash)
    if ch == '"':  # a quoted identifier
        return _close_quote(sql, i, ch, False)
    if ch == "-" and sql.startswith("--", i):
        end = sql.find("\n", i)
        return n if end < 0 else end + 1
    if ch == "/" and sql.startswith("/*", i):
        depth, j = 1, i + 2
        while j < n and depth:
            if sql.startswith("/*", j):
                depth, j = depth + 1, j + 2
            elif sql.startswith("*/", j):
                depth, j = depth - 1, j + 2
            else:
                j += 1
        return j
    if ch == "$" and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
        tag = _DOLLAR_TAG.match(sql, i)
        if tag is not None:
            end = sql.find(tag.group(0), tag.end())
            return n if end < 0 else end + len(tag.group(0))
    return None


def mark_placeholders(sql: str, style: str, escaped: bool) -> tuple[str, tuple[ParamKey, ...]]:  # noqa: PLR0912, PLR0915  # a lexer
    """``sql`` with each placeholder of ``style`` replaced by a marker ``%(pN)s``, and the
    parameter key of each marker, in marker order.

    ``escaped``: the statement is sent with parameters, so (``format``/``pyformat``) ``%%``
    stands for ``%``. Other ``%`` signs are kept; the parser reads them as the modulo
    operator.

    Raises:
        ValueError: ``style`` is not a DB-API paramstyle.
    """
    if style not in STYLES:
        raise ValueError(f"unknown DB-API paramstyle {style!r}; expected one of {sorted(STYLES)}")
    out: list[str] = []
    keys: list[ParamKey] = []
    position = 0
    i = start = 0
    n = len(sql)

    def marker(key: ParamKey) -> str:
        keys.append(key)
        return f"%({MARKER_PREFIX}{len(keys) - 1})s"

    # psycopg and psycopg2 replace %-placeholders everywhere, quoted text included; the
    # other styles are lexed by the server (or SQLite), which skips quoted text
    lexed = style not in {"format", "pyformat"}
    while i < n:
        skip = _skip_quoted(sql, i) if lexed else None
        if skip is not None:
            i = skip
            continue
        ch = sql[i]
        replacement: str | None = None
        end = i + 1
        if ch == "%" and style in {"format", "pyformat"} and escaped:
            nxt = sql[i + 1] if i + 1 < n else ""
            if nxt == "%":
                replacement, end = "%", i + 2
            elif nxt in "sbt":
                replacement, end = marker(position), i + 2
                position += 1
            elif nxt == "(":
                named = _PYFORMAT_NAMED.match(sql, i)
                if named is not None:
                    replacement, end = marker(named.group(1)), named.end()
        elif ch == "?" and style == "qmark":
            replacement = marker(position)
            position += 1
        elif ch == ":" and style in {"named", "numeric"}:
            before = sql[i - 1] if i > 0 else ""
            after = sql[i + 1] if i + 1 < n else ""
            if before != ":" and after != ":":
                if style == "named":
                    named = _NAMED.match(sql, i)
                    if named is not None:
                        replacement, end = marker(named.group(1)), named.end()
                else:
                    number = _NUMBER.match(sql, i + 1)
                    if number is not None:
                        replacement, end = marker(int(number.group(0)) - 1), number.end()
        elif ch == "$" and style == "numeric_dollar":
            number = _NUMBER.match(sql, i + 1)
            if number is not None:
                replacement, end = marker(int(number.group(0)) - 1), number.end()
        if replacement is None:
            i += 1
            continue
        out.append(sql[start:i])
        out.append(replacement)
        i = start = end
    out.append(sql[start:])
    return "".join(out), tuple(keys)
