"""The admin API as MCP tools, for the operator's agent (`l402-gateway mcp`, docs/mcp.md).

Every tool is one admin API call made with the CLI's own client
(gateway.commands.backends.ApiBackend), so the agent sees what
`l402-gateway tokens ... --via api` sees, in the admin API's JSON shapes
(gateway.server.admin_wire), typed here so the SDK publishes input and output
schemas. Tools are grouped in families (tokens, report, routes, config,
health); a new family (sessions, bundles, ...) is one more function in
FAMILIES returning its ToolSpecs, with its access declared per tool.

Writes (revoking a token, reloading routes.yaml) are refused unless the
server was started with `--allow-writes`: the tools stay listed, so the agent
can tell the operator what it would need, and a call returns a tool error
saying so. Nothing here reads a root key or a preimage, and error texts come
from the admin API's secret-free messages.

Imports the `mcp` SDK: load it through gateway.commands.extras (the `mcp` extra).
"""

from __future__ import annotations

import enum
import functools
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, cast

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs it below Python 3.12 (nested shapes)

from gateway import __version__
from gateway.commands.backends import ApiBackend, ApiError
from gateway.commands.tokenref import TokenRefError, token_key
from gateway.config.model import GatewayConfig
from gateway.server.admin_wire import MAX_PAGE, Cursor, WireError, report_to_json, token_to_json
from gateway.store.types import TokenInfo

MAX_REPORT_DAYS = 3660  # the admin API's bound (gateway.server.admin_api)
SERVER_NAME = "l402-gateway"
T = TypeVar("T")


class Access(enum.Enum):
    READ = "read"
    WRITE = "write"  # refused unless --allow-writes


# --- output shapes: the admin API's JSON, typed (tests check they match admin_wire) -------


class TokenOut(TypedDict):
    """A token: its ids, route, state and timestamps (unix seconds); never a secret."""

    token_id: str
    payment_hash: str
    route: str
    state: str  # unpaid, paid, used or revoked
    price_msat: int
    single_use: bool
    created_at: int
    valid_until: int | None
    paid_at: int | None
    amt_paid_msat: int | None
    used_at: int | None
    revoked_at: int | None
    imported: bool


class TokenPage(TypedDict):
    tokens: list[TokenOut]
    next_cursor: str | None  # pass it back as `cursor` for the next page


class TokenShown(TypedDict):
    token: TokenOut


class Revoked(TypedDict):
    token: TokenOut
    revoked: bool  # False: it was revoked already
    cache_cleared: bool  # the gateway dropped its verified credentials: refused at once


class ReportRow(TypedDict):
    day: str
    route: str
    settled_invoices: int
    revenue_msat: int
    paid_requests: int


class Report(TypedDict):
    days: int | None
    rows: list[ReportRow]


class RouteOut(TypedDict):
    name: str
    service: str
    host: str | None
    path: str
    methods: list[str] | None
    upstream: str
    price_msat: int
    token_mode: str
    token_validity_seconds: int | None
    capabilities: list[str]
    required_capability: str | None
    upstream_header_names: list[str]


class Routes(TypedDict):
    routes: list[RouteOut]


class Reloaded(TypedDict):
    ok: bool
    routes: int  # routes in force after the call
    errors: list[str]  # file:line: field: message; the old routes stay in force


class HealthOut(TypedDict):
    alive: bool  # /healthz answered
    ready: bool  # /readyz: LND reachable and the store writable
    checks: dict[str, str]  # each check: "ok" or why not
    error: str | None  # why the gateway did not answer


@dataclass(frozen=True)
class ToolSpec:
    """One tool: the coroutine's typed parameters are its input schema, its return its output."""

    name: str
    title: str
    description: str
    access: Access
    fn: Callable[..., Awaitable[Any]]


TokenArg = Annotated[
    str,
    Field(
        description="token id or payment hash (64 hex characters), or a macaroon",
        min_length=1,
        max_length=8192,
    ),
]


async def _api(call: Awaitable[T], where: str) -> T:
    """Admin API failures as tool errors (their texts are secret-free)."""
    try:
        return await call
    except ApiError as exc:
        raise ToolError(str(exc)) from None
    except WireError as exc:
        raise ToolError(f"{where} answered oddly: {exc}") from None


api_call = _api  # the same, for tool families in their own modules (mcp_sessions)


def _key(text: str) -> bytes:
    try:
        return token_key(text.strip())
    except TokenRefError as exc:
        raise ToolError(str(exc)) from None


def _token(info: TokenInfo) -> TokenOut:
    return cast(TokenOut, token_to_json(info))


def token_tools(api: ApiBackend) -> list[ToolSpec]:
    async def tokens_list(
        route: Annotated[str | None, Field(description="only this route's tokens")] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description="page size")] = 50,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page")] = None,
    ) -> TokenPage:
        try:
            after = Cursor.decode(cursor) if cursor else None
        except WireError as exc:
            raise ToolError(f"cursor: {exc}") from None
        tokens, more = await _api(api.list_tokens(route, limit, after), api.where)
        page = [_token(t) for t in tokens]
        return {"tokens": page, "next_cursor": more.encode() if more else None}

    async def tokens_show(token: TokenArg) -> TokenShown:
        key = _key(token)
        info = await _api(api.find_token(key), api.where)
        if info is None:
            raise ToolError(f"no token with id or payment hash {key.hex()}")
        return {"token": _token(info)}

    async def tokens_revoke(token: TokenArg) -> Revoked:
        key = _key(token)
        info = await _api(api.find_token(key), api.where)
        if info is None:
            raise ToolError(f"no token with id or payment hash {key.hex()}")
        done = await _api(api.revoke(info), api.where)
        return {
            "token": _token(done.token),
            "revoked": done.revoked,
            "cache_cleared": done.cache_cleared,
        }

    return [
        ToolSpec(
            "tokens_list",
            "List tokens",
            "Tokens the gateway minted, newest first, with their state (unpaid, paid, used,"
            " revoked). Page with `cursor`.",
            Access.READ,
            tokens_list,
        ),
        ToolSpec(
            "tokens_show",
            "Show a token",
            "One token by id, payment hash or macaroon: route, price, when it was created,"
            " paid, used or revoked.",
            Access.READ,
            tokens_show,
        ),
        ToolSpec(
            "tokens_revoke",
            "Revoke a token",
            "Revoke a token: the running gateway refuses it from now on (its credential cache"
            " is dropped). A write: needs `l402-gateway mcp --allow-writes`.",
            Access.WRITE,
            tokens_revoke,
        ),
    ]


def report_tools(api: ApiBackend) -> list[ToolSpec]:
    async def report(
        days: Annotated[
            int | None, Field(ge=1, le=MAX_REPORT_DAYS, description="only the last N days (UTC)")
        ] = None,
    ) -> Report:
        rows = await _api(api.revenue_report(days), api.where)
        return {"days": days, "rows": [cast(ReportRow, report_to_json(r)) for r in rows]}

    return [
        ToolSpec(
            "report",
            "Revenue report",
            "Revenue (msat), settled invoices and paid requests per route per day (UTC).",
            Access.READ,
            report,
        )
    ]


def route_tools(api: ApiBackend) -> list[ToolSpec]:
    async def routes_list() -> Routes:
        routes = await _api(api.routes(), api.where)
        return {"routes": [cast(RouteOut, r) for r in routes]}

    return [
        ToolSpec(
            "routes_list",
            "List routes",
            "The routes in force: path pattern, upstream, price, token mode and capabilities"
            " (upstream header names only, never their values).",
            Access.READ,
            routes_list,
        )
    ]


def config_tools(api: ApiBackend) -> list[ToolSpec]:
    async def config_reload() -> Reloaded:
        outcome = await _api(api.reload(), api.where)
        return {"ok": outcome.ok, "routes": outcome.routes, "errors": list(outcome.errors)}

    return [
        ToolSpec(
            "config_reload",
            "Reload routes.yaml",
            "Re-read routes.yaml as SIGHUP does; an invalid file keeps the running routes and"
            " the answer lists every file:line: field: message. A write: needs"
            " `l402-gateway mcp --allow-writes`.",
            Access.WRITE,
            config_reload,
        )
    ]


def health_tools(api: ApiBackend) -> list[ToolSpec]:
    async def health() -> HealthOut:
        state = await api.health()
        return {
            "alive": state.alive,
            "ready": state.ready,
            "checks": dict(state.checks),
            "error": state.error,
        }

    return [
        ToolSpec(
            "health",
            "Gateway health",
            "Whether the gateway answers (/healthz) and is ready (/readyz: LND reachable, store"
            " writable), with the reason for each failing check.",
            Access.READ,
            health,
        )
    ]


def session_tools(api: ApiBackend) -> list[ToolSpec]:
    """Payment-scheme sessions (gateway.commands.mcp_sessions, which builds on this
    module's ToolSpec: imported when the server is built, not at import time)."""
    from gateway.commands.mcp_sessions import session_tools as build

    return build(api)


def balance_tools(api: ApiBackend) -> list[ToolSpec]:
    """Metered balances (gateway.commands.mcp_balances, loaded as session_tools is)."""
    from gateway.commands.mcp_balances import balance_tools as build

    return build(api)


FAMILIES: tuple[Callable[[ApiBackend], list[ToolSpec]], ...] = (
    token_tools,
    report_tools,
    route_tools,
    config_tools,
    health_tools,
    session_tools,
    balance_tools,
)


def refused_write(spec: ToolSpec) -> Callable[..., Awaitable[Any]]:
    """The tool with the same schema, answering every call with the read-only refusal."""

    @functools.wraps(spec.fn)
    async def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise ToolError(
            f"{spec.name} is a write and this MCP server is read-only: the operator must"
            " start it with `l402-gateway mcp --allow-writes` to allow revoking tokens,"
            " closing sessions and reloading the configuration"
        )

    return refuse


def instructions(api: ApiBackend, allow_writes: bool) -> str:
    mode = (
        "Writes are allowed (tokens_revoke, sessions_close, config_reload)."
        if allow_writes
        else "Read-only: tokens_revoke, sessions_close and config_reload answer with an error."
    )
    return (
        f"Operator tools for an L402 payment gateway, through {api.where}. Prices and revenue"
        f" are in millisatoshis (msat), times in unix seconds. {mode}"
    )


def build_server(api: ApiBackend, *, allow_writes: bool) -> MCPServer:
    server: MCPServer = MCPServer(
        SERVER_NAME, version=__version__, instructions=instructions(api, allow_writes)
    )
    for family in FAMILIES:
        for spec in family(api):
            read = spec.access is Access.READ
            server.add_tool(
                spec.fn if read or allow_writes else refused_write(spec),
                name=spec.name,
                title=spec.title,
                description=spec.description,
                annotations=ToolAnnotations(
                    title=spec.title,
                    read_only_hint=read,
                    destructive_hint=not read,
                    idempotent_hint=True,
                    open_world_hint=False,
                ),
                structured_output=True,
            )
    return server


async def serve(config: GatewayConfig, *, allow_writes: bool) -> None:
    """stdio until the client closes it; the API client is closed on the way out."""
    api = ApiBackend.create(config)
    try:
        server = build_server(api, allow_writes=allow_writes)
        mode = "writes allowed" if allow_writes else "read-only; --allow-writes to revoke/reload"
        print(f"l402-gateway mcp: {api.where}, over stdio ({mode})", file=sys.stderr, flush=True)
        await server.run_stdio_async()
    finally:
        await api.close()
