"""The MCP tools on a real in-process gateway (edge listeners, admin API, SQLite store).

The SDK's own client talks to the tool server in-process here; each tool's
answer is compared with what the admin API itself answers, so the agent and
`curl` see one shape. LND's invoice role is the named fake of tests/server;
tests/agent/test_mcp_regtest.py drives `l402-gateway mcp` over stdio against a
gateway on real LND.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from mcp import Client
from mcp.types import CallToolResult

from gateway.commands import mcp_tools
from gateway.commands.backends import ApiBackend
from gateway.commands.loading import load_for_operator
from gateway.config import load_config
from gateway.server.admin_wire import route_to_json
from gateway.store.types import ReportRow, TokenInfo
from tests.ops.support import bearer, write_secret
from tests.server.harness import InProcess, in_process

READS = {"tokens_list", "tokens_show", "report", "routes_list", "health"}
READS |= {"sessions_list", "sessions_show"}  # tests/agent/test_mcp_sessions.py
READS |= {"balances_show"}  # a metered bundle (gateway.commands.mcp_balances)
WRITES = {"tokens_revoke", "config_reload"}
WRITES |= {"sessions_close"}
REFUSAL = (
    "{} is a write and this MCP server is read-only: the operator must start it with"
    " `l402-gateway mcp --allow-writes` to allow revoking tokens, closing sessions and"
    " reloading the configuration"
)


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[InProcess]:
    token_file = write_secret(tmp_path / "admin.token")
    async with in_process(tmp_path, admin={"token_file": str(token_file)}) as h:
        yield h


@pytest.fixture
async def api(gw: InProcess, tmp_path: Path) -> AsyncIterator[ApiBackend]:
    backend = ApiBackend.create(load_for_operator(tmp_path / "routes.yaml", needs=("admin",)))
    yield backend
    await backend.close()


async def admin_json(gw: InProcess, path: str) -> Any:
    async with gw.session.get(gw.admin + path, headers=bearer()) as r:
        assert r.status == 200, path
        return await r.json()


async def call(client: Client, name: str, **arguments: Any) -> CallToolResult:
    result = await client.call_tool(name, arguments)
    assert isinstance(result, CallToolResult)
    return result


def text_of(result: CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


def error_of(result: CallToolResult, name: str) -> str:
    """A tool error's message, as the agent reads it after the SDK's prefix."""
    assert result.is_error, text_of(result)
    prefix = f"Error executing tool {name}: "
    assert text_of(result).startswith(prefix), text_of(result)
    return text_of(result).removeprefix(prefix)


async def test_the_tool_set_its_schemas_and_hints(api: ApiBackend) -> None:
    async with Client(mcp_tools.build_server(api, allow_writes=False)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == READS | WRITES
    for name, tool in tools.items():
        assert tool.output_schema is not None, name
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (name in READS), name
    assert tools["tokens_list"].input_schema["properties"]["limit"]["maximum"] == 1000
    assert tools["tokens_show"].input_schema["required"] == ["token"]
    assert "--allow-writes" in (tools["tokens_revoke"].description or "")


def test_the_output_shapes_are_the_admin_apis() -> None:
    """The typed outputs name exactly the keys admin_wire writes (no drift)."""
    token_keys = set(get_type_hints(mcp_tools.TokenOut))
    info = TokenInfo(b"\1" * 32, b"\2" * 32, "r", 1, False, 1, None, None, None, None, None, False)
    from gateway.server.admin_wire import report_to_json, token_to_json

    assert token_keys == set(token_to_json(info))
    assert set(get_type_hints(mcp_tools.ReportRow)) == set(
        report_to_json(ReportRow("d", "r", 1, 2, 3))
    )
    config = load_config(Path(__file__).parents[2] / "config" / "routes.yaml", check_files=False)
    route = config.routes.routes[0]
    assert set(get_type_hints(mcp_tools.RouteOut)) == set(route_to_json(route))


async def test_reads_answer_what_the_admin_api_answers(gw: InProcess, api: ApiBackend) -> None:
    first = await gw.buy("/paid")
    gw.clock.advance(5)
    second = await gw.buy("/once", "POST")
    async with Client(mcp_tools.build_server(api, allow_writes=False)) as client:
        listed = await call(client, "tokens_list", limit=1000)
        assert not listed.is_error, text_of(listed)
        assert listed.structured_content == await admin_json(gw, "/admin/tokens?limit=1000")
        hashes = [t["payment_hash"] for t in listed.structured_content["tokens"]]
        assert hashes == [second.challenge["payment_hash"], first.challenge["payment_hash"]]

        # paging: one a page, the cursor leads to the older token
        page = await call(client, "tokens_list", limit=1)
        assert page.structured_content["next_cursor"] is not None
        older = await call(
            client, "tokens_list", limit=1, cursor=page.structured_content["next_cursor"]
        )
        assert older.structured_content["tokens"][0]["payment_hash"] == hashes[1]

        token_id = listed.structured_content["tokens"][1]["token_id"]
        expected = await admin_json(gw, f"/admin/tokens/{token_id}")
        for ref in (token_id, first.challenge["payment_hash"], first.macaroon):
            shown = await call(client, "tokens_show", token=ref)
            assert shown.structured_content == expected, ref

        report = await call(client, "report", days=7)
        assert report.structured_content == await admin_json(gw, "/admin/report?days=7")
        report = await call(client, "report")
        assert report.structured_content == await admin_json(gw, "/admin/report")

        routes = await call(client, "routes_list")
        assert routes.structured_content == await admin_json(gw, "/admin/routes")

        health = await call(client, "health")
        assert health.structured_content == {
            "alive": True,
            "ready": True,
            "checks": {"lnd": "ok", "store": "ok"},
            "error": None,
        }


async def test_bad_arguments_and_unknown_tokens_are_tool_errors(api: ApiBackend) -> None:
    async with Client(mcp_tools.build_server(api, allow_writes=True)) as client:
        unknown = await call(client, "tokens_show", token="ab" * 32)
        assert error_of(unknown, "tokens_show") == f"no token with id or payment hash {'ab' * 32}"
        garbage = error_of(
            await call(client, "tokens_revoke", token="not-a-token"), "tokens_revoke"
        )
        assert garbage.startswith("expected a token id or payment hash (64 hex characters)")
        assert "not-a-token" not in garbage
        too_many = await call(client, "tokens_list", limit=1001)
        assert too_many.is_error
        bad_cursor = await call(client, "tokens_list", cursor="x")
        assert error_of(bad_cursor, "tokens_list") == "cursor: bad cursor"


async def test_writes_are_refused_without_allow_writes(gw: InProcess, api: ApiBackend) -> None:
    bought = await gw.buy("/paid")
    async with Client(mcp_tools.build_server(api, allow_writes=False)) as client:
        for name, arguments in (
            ("tokens_revoke", {"token": bought.macaroon}),
            ("config_reload", {}),
        ):
            refused = await call(client, name, **arguments)
            assert error_of(refused, name) == REFUSAL.format(name)
    shown = await admin_json(gw, "/admin/tokens/" + bought.challenge["payment_hash"])
    assert shown["token"]["revoked_at"] is None
    async with gw.session.get(gw.url("/paid"), headers=bought.auth) as r:
        assert r.status == 200  # nothing happened


async def test_revoke_and_reload_with_allow_writes(
    gw: InProcess, api: ApiBackend, tmp_path: Path
) -> None:
    bought = await gw.buy("/paid")
    async with gw.session.get(gw.url("/paid"), headers=bought.auth) as r:
        assert r.status == 200  # now in the gateway's verified-credential cache
    async with Client(mcp_tools.build_server(api, allow_writes=True)) as client:
        revoked = await call(client, "tokens_revoke", token=bought.challenge["payment_hash"])
        assert not revoked.is_error, text_of(revoked)
        body = revoked.structured_content
        assert (body["revoked"], body["cache_cleared"], body["token"]["state"]) == (
            True,
            True,
            "revoked",
        )
        async with gw.session.get(gw.url("/paid"), headers=bought.auth) as r:
            assert r.status == 402  # refused at once
        again = await call(client, "tokens_revoke", token=bought.challenge["payment_hash"])
        assert again.structured_content["revoked"] is False

        # the in-process gateway's LND files are never read, but a reload checks they exist
        for name in ("tls.cert", "invoice.macaroon"):
            (tmp_path / name).write_text("placeholder\n")
        reloaded = await call(client, "config_reload")
        routes = len((await admin_json(gw, "/admin/routes"))["routes"])
        assert reloaded.structured_content == {"ok": True, "routes": routes, "errors": []}

        config = tmp_path / "routes.yaml"
        config.write_text(config.read_text().replace("price_sats: 10", "price_sats: -1", 1))
        refused = await call(client, "config_reload")
        assert not refused.is_error  # the call worked; the file did not
        result = refused.structured_content
        assert (result["ok"], result["routes"]) == (False, routes)
        assert result["errors"]
        assert all(str(config) in e for e in result["errors"])
        assert any("price_sats" in e for e in result["errors"])


async def test_a_gateway_that_is_gone_is_a_health_answer_and_tool_errors(
    tmp_path: Path,
) -> None:
    token_file = write_secret(tmp_path / "admin.token")
    async with in_process(tmp_path, admin={"token_file": str(token_file)}):
        api = ApiBackend.create(load_for_operator(tmp_path / "routes.yaml", needs=("admin",)))
    try:
        async with Client(mcp_tools.build_server(api, allow_writes=False)) as client:
            health = await call(client, "health")
            assert not health.is_error
            state = health.structured_content
            assert (state["alive"], state["ready"], state["checks"]) == (False, False, {})
            assert state["error"].startswith(f"{api.where} did not answer")
            listed = await call(client, "tokens_list")
            assert error_of(listed, "tokens_list").startswith(f"{api.where} did not answer")
    finally:
        await api.close()


async def test_a_rotated_secret_is_followed_and_a_wrong_one_is_named(
    gw: InProcess, api: ApiBackend, tmp_path: Path
) -> None:
    async with Client(mcp_tools.build_server(api, allow_writes=False)) as client:
        assert not (await call(client, "routes_list")).is_error
        write_secret(tmp_path / "admin.token", "b" * 64)  # the gateway re-reads it too
        assert not (await call(client, "routes_list")).is_error
        (tmp_path / "admin.token").chmod(0o644)
        refused = error_of(await call(client, "routes_list"), "routes_list")
        assert refused.startswith("admin.token_file: ")
        assert "readable by group or others" in refused
        assert "b" * 64 not in refused


async def test_balances_show_answers_what_the_admin_api_answers(tmp_path: Path) -> None:
    """A metered route's balance, by token id and by the buying token's payment hash."""
    token_file = write_secret(tmp_path / "admin.token")
    bundle = {"name": "bundle", "path": "^/bundle$",
              "bundle": {"units": 3, "unit": "requests", "price_sats": 5}}  # fmt: skip
    async with in_process(tmp_path, extra=[bundle], admin={"token_file": str(token_file)}) as gw:
        bought = await gw.buy("/bundle")
        async with gw.session.get(gw.url("/bundle"), headers=bought.auth) as r:
            assert r.status == 200
        backend = ApiBackend.create(load_for_operator(tmp_path / "routes.yaml", needs=("admin",)))
        try:
            async with Client(mcp_tools.build_server(backend, allow_writes=False)) as client:
                shown = await call(
                    client, "balances_show", balance=bought.challenge["payment_hash"]
                )
                assert not shown.is_error, text_of(shown)
                token_id = shown.structured_content["balance"]["balance_id"]
                assert shown.structured_content == await admin_json(
                    gw, f"/admin/balances/{token_id}"
                )
                held = shown.structured_content["balance"]
                # One bundle credited; this process's allotment is held until it rolls.
                assert (held["credited"], held["units"]) == (3, held["held"] + held["available"])
                missing = await call(client, "balances_show", balance="00" * 32)
                assert error_of(missing, "balances_show").startswith("no balance for")
                odd = await call(client, "balances_show", balance="zz" * 32)
                assert error_of(odd, "balances_show") == "the id must be 64 hex characters"
        finally:
            await backend.close()
