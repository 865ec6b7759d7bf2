"""The path an ASGI app's router matches, as the raw (still encoded) path the paywall prices.

ASGI servers put the *full* request path in the scope: uvicorn `--root-path
/api` sets `root_path = "/api"`, `path = "/api" + unquote(target)` and
`raw_path = b"/api" + target`, and a Starlette `Mount("/v1", app)` hands its
sub-app the same `path` with `root_path` extended by `/v1`. The router then
matches `path` with `root_path` taken off (Starlette's `get_route_path`: only
when `path` starts with `root_path` followed by `/` or nothing). Pricing
`raw_path` as sent priced `/api/report`, which no route `^/report$` matches,
while the router served `/report`: every priced route was free.

So the middleware prices exactly the route path, in its raw spelling (the
encoded form keeps what normalisation must refuse, such as `%2F`): `raw_path`
less the root path when that is the spelling the router will see, else
`raw_path` itself when a server left the root out of it, else the decoded
route path re-encoded. Routes are therefore written relative to the app the
middleware wraps, as the app's own routes are. Pure: no framework import.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

# Characters a re-encoded route path keeps literally (RFC 3986 pchar and "/"); "%" is
# encoded, so a decoded "%2F" comes back as "%252F" and is refused as double encoding.
_SAFE = "/!$&'()*+,;=:@-._~"


def route_path(path: str, root_path: str) -> str:
    """Starlette's route path: `path` without `root_path` when it is a whole-segment prefix."""
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    if path[len(root_path)] == "/":
        return path[len(root_path) :]
    return path


def _decoded(raw: str) -> str:
    """The decoding servers apply to `raw_path` to make `path` (uvicorn: unquote)."""
    return unquote(raw) if "%" in raw else raw


def priced_raw_path(scope: dict[str, Any]) -> str:
    """The raw path to normalise and price for this scope (always starts with "/")."""
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path") or ""
    routed = route_path(path, root) or "/"  # "" is the root itself: priced as "/"
    raw_bytes = scope.get("raw_path")
    if not raw_bytes:
        return quote(routed, safe=_SAFE)
    raw = raw_bytes.decode("latin-1")
    candidates = []
    if root:
        raw_route = route_path(raw, root)  # uvicorn: the root's ASCII bytes lead raw_path
        if raw_route != raw:
            candidates.append(raw_route or "/")
    candidates.append(raw)
    for candidate in candidates:
        if _decoded(candidate) == routed:
            return candidate
    return quote(routed, safe=_SAFE)
