"""The path an aiohttp app's router matches for the app a middleware is attached to.

aiohttp resolves the route before any middleware runs, and a sub-app mounted
with `add_subapp("/v1", sub)` is routed on the full path: its resources carry
the prefix. A middleware attached to the sub-app (`seller.setup_aiohttp(sub)`)
therefore sees `/v1/report` while the sub-app's own routes, and the routes of
a seller written for it, say `/report`. As with ASGI's `root_path`
(gateway.embed.asgipath), routes are relative to the app the middleware is
attached to: the mount prefixes above it are taken off the raw path before
it is priced. On the top-level app nothing changes.
"""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web


def mount_prefix(request: web.Request, app: web.Application) -> str:
    """The path prefix under which `app` is mounted for this request ("" at the top)."""
    apps = request.match_info.apps
    if app not in apps:
        return ""
    index = apps.index(app)
    if index == 0:
        return ""
    parent = apps[index - 1]
    for resource in parent.router.resources():
        info = resource.get_info()
        if info.get("app") is app:
            prefix = info.get("prefix")  # absolute: aiohttp prefixes nested sub-apps' resources
            return prefix if isinstance(prefix, str) else ""  # add_domain: no path prefix
    return ""


def relative_raw_path(raw_path: str, prefix: str) -> str:
    """`raw_path` without the mount `prefix` (matched segment by segment, decoded, as the
    router matched it); unchanged when the prefix does not lead it."""
    if not prefix:
        return raw_path
    wanted = prefix.strip("/").split("/")
    segments = raw_path.split("/")  # ["", "v1", "report"]
    head = segments[1 : 1 + len(wanted)]
    if [unquote(s) for s in head] != wanted:
        return raw_path
    rest = "/".join(segments[1 + len(wanted) :])
    return "/" + rest
