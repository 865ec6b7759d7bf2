"""Path spellings an upstream may route differently from the gateway: refused by default.

The normal form (gateway.http.paths) makes the gateway and an RFC 3986
upstream agree on the resource. Two spellings survive it that some upstreams
read differently, so the path the gateway priced is not the one they serve:

- `;` path parameters. Tomcat, Jetty and Spring strip `;...` from each segment
  before routing, so `/free/..;/paid/x` (a segment `..;` to the gateway, `..`
  to them) resolves to `/paid/x`, and `/a/..;/b/x` spends route A's credential
  on route B. `%3B` is the same character after one decode and is refused too.
- an encoded `%` (`%25`): an upstream (or a layer in front of it) that decodes
  twice turns `%252e%252e` into `..` after the gateway priced the literal text.

Both are refused with 400 `bad_path` on the route the request matched, unless
that route opts out (`allow_path_parameters`, `allow_encoded_percent`), which
says its upstream treats them as plain characters. Pure: no I/O.
"""

from __future__ import annotations

from typing import Protocol

from gateway.http.paths import NormalPath

PARAMETERS = "path contains ';' (path parameters); this route does not allow them"
ENCODED_PERCENT = "path contains an encoded '%' (%25); this route does not allow it"


class PathOptions(Protocol):
    """A route's opt-outs (gateway.config.model.Route has them): http/ stays below config."""

    @property
    def allow_path_parameters(self) -> bool: ...

    @property
    def allow_encoded_percent(self) -> bool: ...


def path_problem(route: PathOptions, path: NormalPath) -> str | None:
    """Why `route` refuses `path` (a message safe to show), or None."""
    if not route.allow_path_parameters and ";" in path.decoded:
        return PARAMETERS
    if not route.allow_encoded_percent and "%" in path.decoded:
        return ENCODED_PERCENT
    return None
