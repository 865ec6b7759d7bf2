"""The sessions family of MCP tools: Payment-scheme sessions for the operator's agent.

`sessions_list`, `sessions_show` (reads) and `sessions_close` (a write:
refused unless `l402-gateway mcp --allow-writes`), each one admin API call
through the CLI's own client (gateway.commands.session_backends.ApiSessions),
answering in the admin API's JSON shapes (gateway.server.session_wire),
typed here so the SDK publishes their schemas. A session is shown without
its preimage or the buyer's return invoice (only that invoice's payment
hash). Registered in gateway.commands.mcp_tools.FAMILIES.

Imports the `mcp` SDK: load it through gateway.commands.extras (the `mcp` extra).
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs it below Python 3.12 (nested shapes)

from gateway.commands.backends import ApiBackend
from gateway.commands.mcp_tools import Access, ToolSpec, api_call
from gateway.commands.session_backends import CLOSE_MARGIN, ApiSessions
from gateway.config.model import SessionPolicy
from gateway.server.admin_wire import MAX_PAGE, WireError
from gateway.server.session_wire import (
    SessionCursor,
    parse_refund_state,
    parse_session_id,
    parse_status,
)

# A close waits for its refund attempt: the default refund timeout and a margin (a gateway
# configured with a longer one may outlast it; the close still completes there).
CLOSE_TIMEOUT = SessionPolicy.refund_timeout_seconds + CLOSE_MARGIN


class SessionOut(TypedDict):
    """A session: ids, route, money (msat), refund; never a preimage or the return invoice."""

    session_id: str  # the deposit's payment hash
    route: str
    status: str  # open or closed
    unit_msat: int  # the price of one request
    opened_at: int
    last_activity: int
    closed_at: int | None
    close_reason: str | None  # client, idle or admin
    balance_msat: int  # left (including what requests in flight hold)
    held_msat: int
    deposited_msat: int  # the deposit and every top-up
    spent_msat: int
    refund_msat: int | None  # taken from the balance at the close
    refund_state: str | None  # pending, paying, succeeded, failed or skipped
    refund_fee_msat: int | None
    refund_note: str | None  # why a refund failed
    return_payment_hash: str | None  # find the refund in LND by it
    return_invoice_expires_at: int | None


class DepositOut(TypedDict):
    payment_hash: str
    amount_msat: int
    credited_at: int


class SessionPage(TypedDict):
    sessions: list[SessionOut]
    next_cursor: str | None  # pass it back as `cursor` for the next page


class SessionShown(TypedDict):
    session: SessionOut
    deposits: list[DepositOut]  # the deposit first, then each top-up


class SessionClosed(TypedDict):
    session: SessionOut
    closed: bool  # False: it was not open (nothing was done)
    refund_status: str | None  # succeeded, failed, pending or skipped


SessionArg = Annotated[
    str, Field(description="session id: the deposit's payment hash (64 hex characters)")
]


def _session_id(text: str) -> bytes:
    try:
        return parse_session_id(text.strip().lower())
    except WireError as exc:
        raise ToolError(str(exc)) from None


def _filter(parse: Any, text: str | None) -> str | None:
    try:
        return cast(str | None, parse(text))
    except WireError as exc:
        raise ToolError(str(exc)) from None


def session_tools(api: ApiBackend) -> list[ToolSpec]:
    sessions = ApiSessions(api, CLOSE_TIMEOUT)

    async def sessions_list(
        status: Annotated[str | None, Field(description="open or closed")] = None,
        route: Annotated[str | None, Field(description="only this route's sessions")] = None,
        refund: Annotated[
            str | None,
            Field(description="refund state: pending, paying, succeeded, failed or skipped"),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description="page size")] = 50,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page")] = None,
    ) -> SessionPage:
        try:
            after = SessionCursor.decode(cursor) if cursor else None
        except WireError as exc:
            raise ToolError(f"cursor: {exc}") from None
        page = await api_call(
            sessions.list_sessions(
                _filter(parse_status, status), route, _filter(parse_refund_state, refund),
                limit, after,
            ),
            api.where,
        )  # fmt: skip
        return {
            "sessions": [cast(SessionOut, s) for s in page.sessions],
            "next_cursor": page.next_cursor.encode() if page.next_cursor else None,
        }

    async def sessions_show(session_id: SessionArg) -> SessionShown:
        key = _session_id(session_id)
        body = await api_call(sessions.show_session(key), api.where)
        if body is None:
            raise ToolError(f"no session with id {key.hex()}")
        return cast(SessionShown, body)

    async def sessions_close(session_id: SessionArg) -> SessionClosed:
        key = _session_id(session_id)
        done = await api_call(sessions.close_session(key), api.where)
        if done is None:
            raise ToolError(f"no session with id {key.hex()}")
        return {
            "session": cast(SessionOut, done.session),
            "closed": done.closed,
            "refund_status": done.refund_status,
        }

    return [
        ToolSpec(
            "sessions_list",
            "List sessions",
            "Payment-scheme (MPP) prepaid sessions, newest first: route, status, balance and"
            " refund (msat). Filter by status, route or refund state; page with `cursor`.",
            Access.READ,
            sessions_list,
        ),
        ToolSpec(
            "sessions_show",
            "Show a session",
            "One session by id: balance, what was deposited and spent, every deposit and"
            " top-up, and its refund (state, amount, fee, why it failed).",
            Access.READ,
            sessions_show,
        ),
        ToolSpec(
            "sessions_close",
            "Close a session",
            "Close an open session and pay its unspent balance back to the buyer, once (a"
            " failed refund is not retried). Waits for the refund attempt. A write: needs"
            " `l402-gateway mcp --allow-writes`.",
            Access.WRITE,
            sessions_close,
        ),
    ]
