"""The balances family of MCP tools: a metered bundle's balance for the operator's agent.

`balances_show` (a read) asks the admin API's GET /admin/balances/{id}: by the
L402 token id, a charge credential's payment hash, or the payment hash of the
token that bought the bundle (`tokens_show` gives both). It answers in the
admin API's shape (gateway.server.admin_wire.balance_to_json), typed here so
the SDK publishes its schema. Registered in gateway.commands.mcp_tools.FAMILIES.

Imports the `mcp` SDK: load it through gateway.commands.extras (the `mcp` extra).
"""

from __future__ import annotations

from typing import Annotated, cast

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs it below Python 3.12 (nested shapes)

from gateway.commands.backends import ApiBackend
from gateway.commands.mcp_tools import Access, ToolSpec, api_call


class BalanceOut(TypedDict):
    """A metered balance: units left, held by requests in flight, and its history."""

    balance_id: str  # the credential's identity (an L402 token id, a charge's payment hash)
    route: str
    unit: str  # tokens, requests, bytes, or the route's own unit
    units: int  # left, including what requests in flight hold
    held: int
    available: int  # what a new request may reserve
    credited: int  # every bundle bought for it
    debited: int
    created_at: int
    updated_at: int


class BalanceShown(TypedDict):
    balance: BalanceOut


IdArg = Annotated[
    str,
    Field(
        description="token id, a charge's payment hash, or the buying token's payment hash "
        "(64 hex characters)",
        min_length=64,
        max_length=64,
    ),
]


def _ident(text: str) -> bytes:
    try:
        ident = bytes.fromhex(text)
    except ValueError:
        raise ToolError("the id must be 64 hex characters") from None
    if len(ident) != 32:
        raise ToolError("the id must be 64 hex characters")
    return ident


def balance_tools(api: ApiBackend) -> list[ToolSpec]:
    async def balances_show(balance: IdArg) -> BalanceShown:
        ident = _ident(balance.strip())
        found = await api_call(api.balance(ident), api.where)
        if found is None:
            raise ToolError(f"no balance for {ident.hex()} (unpaid, unused, or not metered)")
        return {"balance": cast(BalanceOut, found)}

    return [
        ToolSpec(
            "balances_show",
            "Show a metered balance",
            "A bundle's balance on a metered route (`bundle:`): units left, held by requests"
            " in flight, available, credited and debited, by the token id or a payment hash.",
            Access.READ,
            balances_show,
        )
    ]
