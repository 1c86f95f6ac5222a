"""Make client-sent strings safe to log: one line, printable, bounded.

A request path, task id or header value comes from the client. Logged raw, a
newline in it forges a second log line ("log injection") and an ANSI escape
rewrites a terminal. `printable` escapes every control character (C0, DEL, C1)
and every line/paragraph separator the way Python's repr would, and cuts very
long values, so one client value is one bounded log token.
"""

from __future__ import annotations

import re

MAX_LOGGED_CHARS = 256
# C0 controls, DEL, C1 controls, and Unicode line/paragraph separators (which
# some log viewers treat as new lines); backslash too, so escapes are unambiguous.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\\\\]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """`value` as one printable line of at most about `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = f"{text[:limit]}...({len(text)} chars)"
    return _UNSAFE.sub(_escape, text)
