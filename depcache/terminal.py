"""Text from Redis, the bus or users, made safe to print on a terminal.

Anyone who can PUBLISH on an invalidation channel, or put a string into a dependency name,
chooses what ``depcache watch`` prints: raw escape sequences could clear the operator's screen,
set the window title, forge lines (a carriage return) or hide text (bidirectional overrides).
:func:`printable` writes every such character as a visible escape instead.
"""

from __future__ import annotations

__all__ = ["printable"]

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}


def _escape(char: str) -> str:
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every character a terminal might act on written as an escape, as in a
    Python string literal: control characters (C0, DEL, C1: ESC, BEL, CR, LF, CSI, ...),
    format characters (bidirectional overrides, zero-width joiners), line and paragraph
    separators, spaces other than U+0020, surrogates, private-use and unassigned code points
    (``\\x1b``, ``\\u202e``). Backslashes are doubled, so the result reads back unambiguously.
    Never raises."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in text)
