"""How text read from Aperture's database is shown to the operator.

A service name, a state or a bad value comes from a database anyone with
Aperture's admin API (or write access to its file) could fill. Echoed raw,
a newline forges an output line (`imported 999`), an escape sequence rewrites
the terminal, a 100 MB string floods it. So every such text goes through
`shown`: quoted, escaped like a Python literal (control, format and other
non-printable characters as `\\n`, `\\x1b`, `\\u202e`; printable Unicode kept
readable), and cut to a bounded length that says how long the original was.
"""

from __future__ import annotations

SHOWN_CHARS = 80


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` as a quoted, escaped, bounded literal (always a single printable line)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"
