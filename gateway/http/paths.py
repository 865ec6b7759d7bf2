"""One normal form for a request path: the path that is priced is the path that is forwarded.

Routes used to match aiohttp's decoded `request.path`, which keeps `..`,
while the proxy forwarded the raw path: `GET /free/../paid/x` matched a free
route and a path-normalising upstream served the priced content. Now the
request target is normalised once, the route is matched on that result and
exactly that result is forwarded, so the gateway and any upstream agree on
which resource was asked for.

The normal form (RFC 3986 §6.2.2, plus the rules an edge needs):

- percent-encoded unreserved characters are decoded (`%2e` -> `.`, `%7E` ->
  `~`), so dot segments cannot hide behind an encoding, and hex digits of
  the remaining escapes are upper-cased;
- an encoded slash `%2F` or backslash `%5C`, a literal backslash, an encoded
  NUL and any control character are refused (`BadPath`): upstreams disagree
  on whether `%2F` separates segments (and on `\\`), so a path carrying one
  cannot be priced safely. Refusing beats guessing: no legitimate client of
  a priced API needs them;
- empty segments are collapsed (`//` -> `/`), as many servers do before routing;
- dot segments are removed (`/a/./b/../c` -> `/a/c`); `..` above the root stays at the root;
- the query is passed through untouched (it is never used for routing).

`decoded` (what routes match) is the normal form with every remaining escape
decoded as UTF-8; escapes that are not UTF-8 are refused too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Bytes a path may carry literally (RFC 3986 pchar + "/" + "%" for escapes).
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_FORBIDDEN_ESCAPES = frozenset({"2F", "5C", "00"})
MAX_PATH_LENGTH = 8192


class BadPath(ValueError):
    """The request path cannot be priced safely; `reason` is safe to show the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class NormalPath:
    """`raw`: the normal form, still percent-encoded, as forwarded upstream.
    `decoded`: the same path fully decoded, as routes match it."""

    raw: str
    decoded: str


def _decode_unreserved(match: re.Match[str]) -> str:
    hex_digits = match.group(1).upper()
    if hex_digits in _FORBIDDEN_ESCAPES:
        what = {"2F": "an encoded '/'", "5C": "an encoded '\\'", "00": "an encoded NUL"}
        raise BadPath(f"path contains {what[hex_digits]} (%{hex_digits})")
    char = chr(int(hex_digits, 16))
    if char in _UNRESERVED:
        return char
    if int(hex_digits, 16) < 0x20 or hex_digits == "7F":
        raise BadPath("path contains an encoded control character")
    return "%" + hex_digits


def _remove_dot_segments(segments: list[str]) -> list[str]:
    out: list[str] = []
    for segment in segments:
        if segment == ".":
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    return out


def normalize(raw_path: str) -> NormalPath:
    """Normalise a request's raw path (no query); raises BadPath."""
    if len(raw_path) > MAX_PATH_LENGTH:
        raise BadPath(f"path longer than {MAX_PATH_LENGTH} characters")
    if not raw_path.startswith("/"):
        raise BadPath("path must start with '/'")
    if "\\" in raw_path:
        raise BadPath("path contains a backslash")
    if _PATH_CHARS.fullmatch(raw_path) is None:
        raise BadPath("path contains characters that must be percent-encoded")
    if _BAD_ESCAPE.search(raw_path):
        raise BadPath("path contains a malformed percent-escape")
    text = _ESCAPE.sub(_decode_unreserved, raw_path)
    trailing = text.endswith("/") or text.endswith("/.") or text.endswith("/..")
    segments = _remove_dot_segments([s for s in text.split("/") if s])
    raw = "/" + "/".join(segments)
    if trailing and segments:
        raw += "/"
    try:
        decoded = unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadPath("path escapes are not UTF-8") from None
    return NormalPath(raw, decoded)
