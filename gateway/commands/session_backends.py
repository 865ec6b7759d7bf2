"""Where `l402-gateway sessions ...` reads and closes sessions: a running gateway, or the store.

Both answer in the admin API's JSON shapes (gateway.server.session_wire), so
the two print alike. Through the API (the default when a gateway answers),
a close is the running gateway's own close: its refund payer pays the
refund. Straight on the store (no gateway running, or `--via store`), the
command closes with the same close path (gateway.paywall.mpp.closing) and a
refund payer of its own, opened from `lightning.refund_macaroon`; without
that setting it refuses to close, rather than record a refund that was never
tried as failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.commands.backends import ApiBackend, ApiError, OperatorBackend, StoreBackend
from gateway.commands.loading import CommandError
from gateway.config.model import GatewayConfig
from gateway.server.admin_wire import WireError
from gateway.server.session_wire import (
    SessionCursor,
    check_credit,
    check_session,
    page_json,
    shown,
)
from gateway.store.roles import Store

CLOSE_MARGIN = 30.0  # seconds a close through the API may take beyond its refund's timeout


@dataclass(frozen=True)
class Page:
    sessions: list[dict[str, Any]]
    next_cursor: SessionCursor | None


@dataclass(frozen=True)
class Closed:
    """POST /admin/sessions/{id}/close: `closed` False when it was not open (nothing paid)."""

    closed: bool
    session: dict[str, Any]
    refund_status: str | None


class SessionOps(Protocol):
    where: str

    async def list_sessions(
        self,
        status: str | None,
        route: str | None,
        refund: str | None,
        limit: int,
        cursor: SessionCursor | None,
    ) -> Page: ...

    async def show_session(self, session_id: bytes) -> dict[str, Any] | None:
        """`{"session", "deposits"}`, None when unknown."""
        ...

    async def close_session(self, session_id: bytes) -> Closed | None:
        """None when unknown."""
        ...


class StoreSessions:
    def __init__(self, store: Store, config: GatewayConfig, where: str) -> None:
        self._store = store
        self._config = config
        self.where = where

    async def list_sessions(
        self,
        status: str | None,
        route: str | None,
        refund: str | None,
        limit: int,
        cursor: SessionCursor | None,
    ) -> Page:
        infos = await self._store.list_sessions(
            status,
            limit + 1,
            route=route,
            refund_state=refund,
            before=cursor.before if cursor else None,
        )
        body = page_json(infos, limit)
        next_cursor = body["next_cursor"]
        return Page(body["sessions"], SessionCursor.decode(next_cursor) if next_cursor else None)

    async def show_session(self, session_id: bytes) -> dict[str, Any] | None:
        return await shown(self._store, session_id)

    async def close_session(self, session_id: bytes) -> Closed | None:
        before = await shown(self._store, session_id)
        if before is None:
            return None
        if before["session"]["status"] != "open":
            return Closed(False, before["session"], None)
        lightning = self._config.lightning
        if lightning.refund_macaroon is None:
            raise CommandError(
                f"{lightning.section}.refund_macaroon is not set: closing through the store"
                " pays the refund with it (close through the running gateway, --via api,"
                " or set it)"
            )
        # Imported here: only a close through the store pays (the LND client, the metrics).

        # Imported here: only a close through the store pays (the LND client, the metrics).
        from gateway.lightning.factory import open_refund_payer
        from gateway.observability.metrics import GatewayMetrics
        from gateway.paywall.mpp.closing import SessionCloser
        from gateway.paywall.mpp.refunds import Refunder

        payer = open_refund_payer(lightning)
        metrics = GatewayMetrics()  # this command's own (not scraped)
        try:
            refunds = Refunder(self._store, payer, self._config.payment.sessions, metrics)
            done = await SessionCloser(self._store, refunds, metrics).close(
                session_id, "admin", int(time.time())
            )
        finally:
            if payer is not None:
                await payer.close()
        after = await shown(self._store, session_id)
        session = (after or before)["session"]
        if done is None:
            return Closed(False, session, None)
        return Closed(True, session, done.refund.value)


class ApiSessions:
    def __init__(self, api: ApiBackend, close_timeout: float) -> None:
        self._api = api
        self._close_timeout = close_timeout
        self.where = api.where

    async def list_sessions(
        self,
        status: str | None,
        route: str | None,
        refund: str | None,
        limit: int,
        cursor: SessionCursor | None,
    ) -> Page:
        params = {"limit": str(limit)}
        for key, value in (("status", status), ("route", route), ("refund", refund)):
            if value:
                params[key] = value
        if cursor:
            params["cursor"] = cursor.encode()
        body = await self._api._call("GET", "/admin/sessions", params, passthrough=())
        sessions = body.get("sessions")
        if not isinstance(sessions, list):
            raise WireError("sessions: not a list")
        next_cursor = body.get("next_cursor")
        return Page(
            [check_session(s) for s in sessions],
            SessionCursor.decode(next_cursor) if isinstance(next_cursor, str) else None,
        )

    async def show_session(self, session_id: bytes) -> dict[str, Any] | None:
        body = await self._api._call("GET", f"/admin/sessions/{session_id.hex()}")
        if body["_status"] == 404:
            return None
        deposits = body.get("deposits")
        if not isinstance(deposits, list):
            raise WireError("deposits: not a list")
        return {
            "session": check_session(body.get("session")),
            "deposits": [check_credit(d) for d in deposits],
        }

    async def close_session(self, session_id: bytes) -> Closed | None:
        body = await self._api._call(
            "POST", f"/admin/sessions/{session_id.hex()}/close", timeout=self._close_timeout
        )
        if body["_status"] == 404:
            return None
        session = check_session(body.get("session"))
        if body["_status"] == 409:
            return Closed(False, session, None)
        refund = body.get("refund_status")
        if body.get("closed") is not True or not isinstance(refund, str):
            raise WireError("close: not {session, closed, refund_status}")
        return Closed(True, session, refund)


def session_ops(backend: OperatorBackend, config: GatewayConfig) -> SessionOps:
    """The sessions' operations on an opened operator backend (tokens.run_with_backend)."""
    if isinstance(backend, ApiBackend):
        timeout = config.payment.sessions.refund_timeout_seconds + CLOSE_MARGIN
        return ApiSessions(backend, timeout)
    if isinstance(backend, StoreBackend):
        return StoreSessions(backend.store, config, backend.where)
    raise ApiError(0, f"sessions are not available through {backend.where}")
