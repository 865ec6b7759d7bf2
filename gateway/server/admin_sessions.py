"""The admin API's Payment-scheme sessions: list, show, and close with the refund.

    GET  /admin/sessions?status=&route=&refund=&limit=&cursor=
    GET  /admin/sessions/{session id}
    POST /admin/sessions/{session id}/close

Behind the same bearer guard as the rest of /admin/ (gateway.server.admin_api).
Reads go to the store (SessionCatalog). A close goes through the close path
every other close takes (gateway.paywall.mpp.closing.SessionCloser: the
compare-and-set close, then one refund attempt through the refund payer),
reached through a hook: the running seller's own closer (under `serve --workers
N`, that of the worker that answers: every worker serves the admin listener).
The answer waits for the refund
attempt (bounded by payment.sessions.refund_timeout_seconds), as a client's
close does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.paywall.mpp.closing import ClosedSession
from gateway.server.admin_wire import DEFAULT_PAGE, MAX_PAGE, WireError
from gateway.server.keys import HANDLER_KEY, STORE_KEY
from gateway.server.session_wire import (
    SessionCursor,
    page_json,
    parse_refund_state,
    parse_session_id,
    parse_status,
    session_to_json,
    shown,
)
from gateway.store.roles import SessionCatalog

log = logging.getLogger("gateway.admin")

CloseHook = Callable[[bytes], Awaitable[ClosedSession | None]]


class CloserUnavailable(Exception):
    """No closer can act now (the seller has not started, or has stopped)."""


@dataclass
class SessionsAdmin:
    source: web.Application  # holds the store (STORE_KEY)
    close: CloseHook | None

    @property
    def store(self) -> SessionCatalog:
        return self.source[STORE_KEY]


SESSIONS_KEY = web.AppKey("admin_sessions", SessionsAdmin)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _limit(request: web.Request) -> int:
    text = request.query.get("limit")
    if text is None or text == "":
        return DEFAULT_PAGE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise WireError(f"limit must be an integer from 1 to {MAX_PAGE}")
    return int(text)


async def list_sessions(request: web.Request) -> web.Response:
    admin = request.app[SESSIONS_KEY]
    limit = _limit(request)
    cursor_text = request.query.get("cursor")
    cursor = SessionCursor.decode(cursor_text) if cursor_text else None
    infos = await admin.store.list_sessions(
        parse_status(request.query.get("status")),
        limit + 1,
        route=request.query.get("route") or None,
        refund_state=parse_refund_state(request.query.get("refund")),
        before=cursor.before if cursor else None,
    )
    return web.json_response(page_json(infos, limit))


async def show_session(request: web.Request) -> web.Response:
    admin = request.app[SESSIONS_KEY]
    body = await shown(admin.store, parse_session_id(request.match_info["id"]))
    if body is None:
        return _error(404, "no session with that id")
    return web.json_response(body)


async def close_session(request: web.Request) -> web.Response:
    admin = request.app[SESSIONS_KEY]
    session_id = parse_session_id(request.match_info["id"])
    if admin.close is None:
        return _error(501, "this listener cannot close sessions")
    before = await admin.store.find_session(session_id)
    if before is None:
        return _error(404, "no session with that id")
    try:
        done = await admin.close(session_id)
    except CloserUnavailable as exc:
        return _error(503, str(exc))
    after = await admin.store.find_session(session_id) or before
    if done is None:
        return _error(409, "the session is not open", session=session_to_json(after))
    log.warning(
        "session closed through the admin API",
        extra={"route": done.session.route, "session_id": session_id.hex(),
               "outcome": done.refund.value},
    )  # fmt: skip
    return web.json_response(
        {"session": session_to_json(after), "closed": True, "refund_status": done.refund.value}
    )


def add_session_routes(
    app: web.Application, source: web.Application, close: CloseHook | None
) -> None:
    app[SESSIONS_KEY] = SessionsAdmin(source, close)
    app.router.add_get("/admin/sessions", list_sessions)
    app.router.add_get("/admin/sessions/{id}", show_session)
    app.router.add_post("/admin/sessions/{id}/close", close_session)


# --- closers ----------------------------------------------------------------------------


def seller_closer(source: web.Application) -> CloseHook | None:
    """One gateway process: the running seller's own closer (its store, refunder, metrics)."""
    handler = source.get(HANDLER_KEY)
    if handler is None:
        return None

    async def close(session_id: bytes) -> ClosedSession | None:
        try:
            seller = handler.paywall.services.payment
        except RuntimeError:
            raise CloserUnavailable("the gateway has not started selling yet") from None
        if seller is None:
            raise CloserUnavailable("this gateway does not sell the Payment scheme")
        return await seller.closer.close(session_id, "admin", int(time.time()))

    return close
