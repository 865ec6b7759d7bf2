"""Where operator commands read and revoke tokens: a running gateway, or the store itself.

`tokens`, `revoke` and `report` work with or without a running gateway. With
one (its admin API answers and `admin.token_file` is set) they go through
the API: a revocation then also drops the gateway's cached credentials, so
the token is refused at once instead of within 60 s, and the command needs
no store credentials. Without one they open the store directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from gateway.commands.loading import EXIT_FAILED, CommandError, store_unresolved
from gateway.config.admin import AdminTokenError, read_admin_token
from gateway.config.model import GatewayConfig, Listener
from gateway.server.admin_wire import (
    Cursor,
    WireError,
    report_from_json,
    token_from_json,
)
from gateway.store import open_store
from gateway.store.roles import Store
from gateway.store.types import ReportRow, StoreError, TokenInfo

CLI_STORE_TIMEOUT = 30.0  # operator commands may scan a large store; serving uses store.timeout
API_TIMEOUT = 30.0
PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Revocation:
    revoked: bool  # False: it was revoked already
    token: TokenInfo
    cache_cleared: bool  # a running gateway dropped its verified credentials


class OperatorBackend(Protocol):
    """The token and report operations, wherever they are carried out."""

    where: str  # for messages: "store sqlite:///..." or "gateway admin API at http://..."

    async def list_tokens(
        self, route: str | None, limit: int, cursor: Cursor | None
    ) -> tuple[list[TokenInfo], Cursor | None]: ...

    async def find_token(self, token_id_or_hash: bytes) -> TokenInfo | None: ...

    async def revoke(self, token: TokenInfo) -> Revocation: ...

    async def revenue_report(self, days: int | None) -> list[ReportRow]: ...

    async def close(self) -> None: ...


class StoreBackend:
    """Straight to the store (no gateway needed; a running one notices within 60 s)."""

    def __init__(self, store: Store, where: str) -> None:
        self.store = store
        self.where = where

    @classmethod
    async def open(cls, config: GatewayConfig) -> StoreBackend:
        unresolved = store_unresolved(config)
        if unresolved is not None:
            raise CommandError(f"{unresolved} (needed to open the store)")
        try:
            store = await open_store(config.store.url, config.base_dir, timeout=CLI_STORE_TIMEOUT)
        except StoreError as exc:
            raise CommandError(f"store: cannot open it: {exc}", EXIT_FAILED) from None
        return cls(store, "the store")

    async def list_tokens(
        self, route: str | None, limit: int, cursor: Cursor | None
    ) -> tuple[list[TokenInfo], Cursor | None]:
        before = (cursor.created_at, cursor.token_id) if cursor else None
        rows = await self.store.list_tokens(route=route, limit=limit + 1, before=before)
        page = rows[:limit]
        more = len(rows) > limit and bool(page)
        return page, Cursor.after(page[-1]) if more else None

    async def find_token(self, token_id_or_hash: bytes) -> TokenInfo | None:
        return await self.store.find_token(token_id_or_hash)

    async def revoke(self, token: TokenInfo) -> Revocation:
        revoked = await self.store.revoke(token.token_id.hex())
        after = await self.store.find_token(token.token_id)
        return Revocation(revoked, after or token, cache_cleared=False)

    async def revenue_report(self, days: int | None) -> list[ReportRow]:
        return await self.store.revenue_report(days)

    async def close(self) -> None:
        await self.store.close()


class ApiError(Exception):
    """The admin API answered with an error (message from its JSON body) or not at all."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def admin_base_url(listener: Listener) -> str:
    """Where to reach a listener bound to `listener` from this host (wildcards -> loopback)."""
    host = listener.host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if address.is_unspecified:
            host = "::1" if address.version == 6 else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{listener.port}"


@dataclass(frozen=True)
class ReloadOutcome:
    """POST /admin/reload: `routes` in force after it; `errors` kept the old routes."""

    ok: bool
    routes: int
    errors: tuple[str, ...]


@dataclass(frozen=True)
class Health:
    """/healthz and /readyz: whether the process answers, and LND's and the store's state."""

    alive: bool
    ready: bool
    checks: dict[str, str]
    error: str | None = None  # why nothing answered (alive is then False)


class ApiBackend:
    """Through a running gateway's admin API (bearer secret from admin.token_file).

    The secret is read from the file on every call, with the same rules as the
    gateway's (owner-only, at least 32 characters): a long-lived client (the
    MCP server) follows a rotation without a restart, as the gateway does.
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token_file: Path) -> None:
        self.session = session
        self.base = base_url
        self.token_file = token_file
        self.where = f"the gateway's admin API at {base_url}"

    @classmethod
    def create(cls, config: GatewayConfig) -> ApiBackend:
        token_file = config.admin.token_file
        if token_file is None:
            raise CommandError(f"{config.source}: admin.token_file is not set (the API is off)")
        try:
            read_admin_token(token_file)  # refused now (exit 2) rather than on the first call
        except AdminTokenError as exc:
            raise CommandError(f"admin.token_file: {exc}") from None
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=API_TIMEOUT))
        return cls(session, admin_base_url(config.listen.admin), token_file)

    def _authorization(self) -> dict[str, str]:
        try:
            secret = read_admin_token(self.token_file).decode("utf-8", "surrogateescape")
        except AdminTokenError as exc:
            raise ApiError(0, f"admin.token_file: {exc}") from None
        return {"Authorization": f"Bearer {secret}"}

    async def answers(self) -> bool:
        """Is a gateway listening there? (/healthz, no credential needed)."""
        try:
            async with self.session.get(
                self.base + "/healthz", timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        *,
        passthrough: tuple[int, ...] = (404, 409),
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One admin API call; statuses >= 400 other than `passthrough` raise ApiError.

        `timeout` replaces API_TIMEOUT for a call that waits on purpose (a session close
        waits for its refund attempt)."""
        headers = self._authorization()
        limit = API_TIMEOUT if timeout is None else timeout
        try:
            async with self.session.request(
                method,
                self.base + path,
                params=params or {},
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=limit),
            ) as r:
                try:
                    body = await r.json()
                except (aiohttp.ContentTypeError, ValueError):
                    body = {}
                if not isinstance(body, dict):
                    body = {}
                if r.status == 401:
                    raise ApiError(
                        401,
                        f"{self.where} refused the secret in admin.token_file"
                        " (is it the running gateway's file?)",
                    )
                if r.status >= 400 and r.status not in passthrough:
                    raise ApiError(r.status, f"{self.where}: {body.get('error', r.reason)}")
                body["_status"] = r.status
                return body
        except aiohttp.ClientError as exc:
            raise ApiError(0, f"{self.where} did not answer: {exc}") from None
        except TimeoutError:
            raise ApiError(0, f"{self.where} did not answer within {limit:g} s") from None

    async def list_tokens(
        self, route: str | None, limit: int, cursor: Cursor | None
    ) -> tuple[list[TokenInfo], Cursor | None]:
        params = {"limit": str(limit)}
        if route:
            params["route"] = route
        if cursor:
            params["cursor"] = cursor.encode()
        body = await self._call("GET", "/admin/tokens", params)
        tokens = [token_from_json(item) for item in body.get("tokens", [])]
        next_cursor = body.get("next_cursor")
        return tokens, Cursor.decode(next_cursor) if isinstance(next_cursor, str) else None

    async def find_token(self, token_id_or_hash: bytes) -> TokenInfo | None:
        body = await self._call("GET", f"/admin/tokens/{token_id_or_hash.hex()}")
        return None if body["_status"] == 404 else token_from_json(body.get("token"))

    async def revoke(self, token: TokenInfo) -> Revocation:
        body = await self._call("POST", f"/admin/tokens/{token.token_id.hex()}/revoke")
        if body["_status"] == 404:
            raise ApiError(404, f"token {token.token_id.hex()}: not found")
        after = token_from_json(body.get("token"))
        if body["_status"] == 409:
            return Revocation(False, after, cache_cleared=False)
        return Revocation(True, after, cache_cleared=bool(body.get("cache_cleared")))

    async def revenue_report(self, days: int | None) -> list[ReportRow]:
        body = await self._call("GET", "/admin/report", {"days": str(days)} if days else None)
        return [report_from_json(row) for row in body.get("rows", [])]

    async def routes(self) -> list[dict[str, Any]]:
        """The routes in force, as GET /admin/routes writes them (header names, never values)."""
        body = await self._call("GET", "/admin/routes", passthrough=())
        routes = body.get("routes")
        if not isinstance(routes, list) or not all(isinstance(r, dict) for r in routes):
            raise WireError("routes: not a list of routes")
        return routes

    async def balance(self, ident: bytes) -> dict[str, Any] | None:
        """GET /admin/balances/{id}: a metered balance in the API's shape, None if unknown."""
        body = await self._call("GET", f"/admin/balances/{ident.hex()}")
        if body["_status"] == 404:
            return None
        balance = body.get("balance")
        if not isinstance(balance, dict):
            raise WireError("balances: not {balance}")
        return balance

    async def reload(self) -> ReloadOutcome:
        """POST /admin/reload: 200, or 422 with every `file:line: field: message`."""
        body = await self._call("POST", "/admin/reload", passthrough=(422,))
        errors, routes = body.get("errors", []), body.get("routes")
        if not isinstance(errors, list) or not isinstance(routes, int):
            raise WireError("reload: not {ok, routes, errors}")
        return ReloadOutcome(
            ok=body.get("ok") is True and body["_status"] == 200,
            routes=routes,
            errors=tuple(str(e) for e in errors),
        )

    async def health(self) -> Health:
        """/healthz then /readyz (no secret); a gateway that does not answer is not alive."""
        try:
            async with self.session.get(self.base + "/healthz") as r:
                alive = r.status == 200
            async with self.session.get(self.base + "/readyz") as r:
                body = await r.json() if r.content_type == "application/json" else {}
                status = r.status
        except aiohttp.ClientError as exc:
            return Health(False, False, {}, f"{self.where} did not answer: {exc}")
        except TimeoutError:
            return Health(False, False, {}, f"{self.where} did not answer within {API_TIMEOUT:g} s")
        raw = body.get("checks") if isinstance(body, dict) else None
        checks = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        return Health(alive, status == 200 and body.get("ready") is True, checks)

    async def close(self) -> None:
        await self.session.close()


async def open_backend(config: GatewayConfig, via: str) -> OperatorBackend:
    """`api`, `store`, or `auto`: the API when a gateway answers and the API is on."""
    if via == "store" or (via == "auto" and config.admin.token_file is None):
        return await StoreBackend.open(config)
    api = ApiBackend.create(config)
    if await api.answers():
        return api
    await api.close()
    if via == "api":
        raise CommandError(f"no gateway answers at {api.base} (is it running?)", EXIT_FAILED)
    return await StoreBackend.open(config)


async def close_quietly(backend: OperatorBackend) -> None:
    """Close without letting a close failure hide the command's own result."""
    with contextlib.suppress(StoreError, TimeoutError, aiohttp.ClientError):
        await asyncio.wait_for(backend.close(), 10)


__all__ = [
    "ApiBackend",
    "ApiError",
    "Health",
    "OperatorBackend",
    "ReloadOutcome",
    "Revocation",
    "StoreBackend",
    "WireError",
    "admin_base_url",
    "close_quietly",
    "open_backend",
]
