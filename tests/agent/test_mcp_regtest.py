"""`l402-gateway mcp` over stdio, driven by the SDK's own client, against a gateway on real LND.

The gateway is `l402-gateway serve` as a process on the regtest seller node;
a token is bought and paid over Lightning, then every tool is called through
a read-only MCP server (writes refused, the token still buys) and through one
started with `--allow-writes` (reload, then revoke: refused at once).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult

from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from tests.ops.support import REPO, SECRET, bearer
from tests.support.served import PRICE_SATS, ROUTE_PATH, Served, served_gateway

pytestmark = pytest.mark.regtest
TOOLS = {
    "tokens_list", "tokens_show", "tokens_revoke", "report", "routes_list", "config_reload",
    "health", "sessions_list", "sessions_show", "sessions_close", "balances_show",
}  # fmt: skip


@pytest.fixture
async def served(regtest: Descriptor, tmp_path: Path) -> AsyncIterator[Served]:
    async with served_gateway(regtest, tmp_path) as gateway:
        yield gateway


def mcp_client(served: Served, errlog: Path, *flags: str) -> Client:
    """`python -m gateway mcp` as an MCP client config launches it (stdio, its stderr to a file)."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gateway", "mcp", "--config", str(served.config), *flags],
        cwd=REPO,
    )
    return Client(stdio_client(params, errlog=errlog.open("a")), read_timeout_seconds=60)


async def call(client: Client, name: str, **arguments: Any) -> CallToolResult:
    result = await client.call_tool(name, arguments)
    assert isinstance(result, CallToolResult)
    return result


def ok(result: CallToolResult) -> Any:
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert not result.is_error, text
    return result.structured_content


def refused(result: CallToolResult, name: str) -> str:
    assert result.is_error
    text = " ".join(getattr(block, "text", "") for block in result.content)
    return text.removeprefix(f"Error executing tool {name}: ")


async def admin(session: aiohttp.ClientSession, served: Served, path: str) -> Any:
    async with session.get(served.admin + path, headers=bearer()) as r:
        assert r.status == 200
        return await r.json()


async def test_every_tool_over_stdio_against_a_gateway_on_regtest(
    served: Served, buyer_admin: LndClient, tmp_path: Path
) -> None:
    url = served.public + ROUTE_PATH
    errlog = tmp_path / "mcp.stderr"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as r:
            assert r.status == 402
            challenge = await r.json()
        payment = await buyer_admin.pay_invoice(
            challenge["invoice"], fee_limit_msat=10_000, timeout_seconds=30
        )
        credential = {"Authorization": f"L402 {challenge['macaroon']}:{payment.preimage.hex()}"}
        async with session.get(url, headers=credential) as r:
            assert r.status == 200

        async with mcp_client(served, errlog) as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS

            # the settlement follower books the payment: the token shows as paid
            deadline = time.monotonic() + 30
            while True:
                page = ok(await call(client, "tokens_list"))
                (token,) = page["tokens"]
                if token["state"] == "paid" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)  # polling the follower, bounded by the deadline
            assert token["payment_hash"] == challenge["payment_hash"]
            assert (token["state"], token["amt_paid_msat"]) == ("paid", PRICE_SATS * 1000)
            assert page == await admin(session, served, "/admin/tokens?limit=50")

            shown = ok(await call(client, "tokens_show", token=challenge["macaroon"]))
            assert shown == {"token": token}

            report = ok(await call(client, "report", days=1))
            assert report == await admin(session, served, "/admin/report?days=1")
            assert sum(row["revenue_msat"] for row in report["rows"]) == PRICE_SATS * 1000

            routes = ok(await call(client, "routes_list"))
            assert [(r["name"], r["price_msat"]) for r in routes["routes"]] == [
                ("signal", PRICE_SATS * 1000)
            ]
            assert routes["routes"][0]["upstream_header_names"] == ["X-Upstream-Key"]

            health = ok(await call(client, "health"))
            assert health == {
                "alive": True,
                "ready": True,
                "checks": health["checks"],
                "error": None,
            }
            assert (health["checks"]["lnd"], health["checks"]["store"]) == ("ok", "ok")

            # the route is not metered: the token has no balance, and the tool says so
            none = refused(
                await call(client, "balances_show", balance=token["token_id"]), "balances_show"
            )
            assert none.startswith(f"no balance for {token['token_id']}")

            # read-only: both writes are refused, and nothing changed
            revoke = refused(
                await call(client, "tokens_revoke", token=token["token_id"]), "tokens_revoke"
            )
            assert revoke.startswith("tokens_revoke is a write and this MCP server is read-only")
            assert "--allow-writes" in revoke
            reload = refused(await call(client, "config_reload"), "config_reload")
            assert reload.startswith("config_reload is a write and this MCP server is read-only")
        async with session.get(url, headers=credential) as r:
            assert r.status == 200

        async with mcp_client(served, errlog, "--allow-writes") as client:
            reloaded = ok(await call(client, "config_reload"))
            assert reloaded == {"ok": True, "routes": 1, "errors": []}
            revoked = ok(await call(client, "tokens_revoke", token=challenge["payment_hash"]))
            assert (revoked["revoked"], revoked["token"]["state"]) == (True, "revoked")
            async with session.get(url, headers=credential) as r:
                assert r.status == 402  # refused at once
            again = ok(await call(client, "tokens_revoke", token=challenge["payment_hash"]))
            assert again["revoked"] is False

    stderr = errlog.read_text()
    where = f"the gateway's admin API at {served.admin}, over stdio"
    assert f"l402-gateway mcp: {where} (read-only; --allow-writes to revoke/reload)" in stderr
    assert f"l402-gateway mcp: {where} (writes allowed)" in stderr
    for secret in (SECRET, payment.preimage.hex()):
        assert secret not in stderr
    assert json.dumps(SECRET) not in (tmp_path / "gateway.log").read_text()
