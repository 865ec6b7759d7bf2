"""The sessions MCP tools on a real in-process gateway (admin API, running seller) over a real
SQLite store holding real sessions: each answer is what the admin API answers, the close is
a write, and no answer holds a preimage or the buyer's return invoice."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from mcp import Client

from gateway.commands import mcp_sessions, mcp_tools
from gateway.commands.backends import ApiBackend
from gateway.commands.loading import load_for_operator
from gateway.server.session_wire import SESSION_KEYS
from tests.agent.test_mcp_tools import REFUSAL, admin_json, call, error_of, text_of
from tests.ops.test_admin_sessions import payment_top
from tests.server.harness import InProcess, in_process
from tests.support.sessions import Seeded, open_session, spend, top_up

NOW = int(time.time())


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path, **payment_top(tmp_path)) as h:
        yield h


@pytest.fixture
async def api(gw: InProcess, tmp_path: Path) -> AsyncIterator[ApiBackend]:
    backend = ApiBackend.create(load_for_operator(tmp_path / "routes.yaml", needs=("admin",)))
    yield backend
    await backend.close()


async def seed(gw: InProcess) -> tuple[Seeded, Seeded]:
    older = await open_session(gw.store, "paid", deposit_msat=100_000, unit_msat=10_000, now=NOW)
    await top_up(gw.store, older, 50_000, NOW + 1)
    await spend(gw.store, older, 20_000, NOW + 2)
    newer = await open_session(gw.store, "once", deposit_msat=42_000, unit_msat=42_000,
                               now=NOW + 5)  # fmt: skip
    return older, newer


def no_secrets(result: Any, *seeded: Seeded) -> None:
    text = str(result.structured_content) + text_of(result)
    for s in seeded:
        assert s.preimage.hex() not in text
        assert s.return_invoice[:40] not in text


def test_the_output_shapes_are_the_admin_apis() -> None:
    assert list(get_type_hints(mcp_sessions.SessionOut)) == list(SESSION_KEYS)
    assert set(get_type_hints(mcp_sessions.DepositOut)) == {
        "payment_hash", "amount_msat", "credited_at",
    }  # fmt: skip


async def test_the_tools_and_their_hints(api: ApiBackend) -> None:
    async with Client(mcp_tools.build_server(api, allow_writes=False)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name, read in (("sessions_list", True), ("sessions_show", True), ("sessions_close", False)):
        tool = tools[name]
        assert tool.output_schema is not None, name
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is read, name
    assert tools["sessions_list"].input_schema["properties"]["limit"]["maximum"] == 1000
    assert tools["sessions_close"].input_schema["required"] == ["session_id"]


async def test_reads_answer_what_the_admin_api_answers(gw: InProcess, api: ApiBackend) -> None:
    older, newer = await seed(gw)
    async with Client(mcp_tools.build_server(api, allow_writes=False)) as client:
        listed = await call(client, "sessions_list", limit=1000)
        assert not listed.is_error, text_of(listed)
        assert listed.structured_content == await admin_json(gw, "/admin/sessions?limit=1000")
        ids = [s["session_id"] for s in listed.structured_content["sessions"]]
        assert ids == [newer.session_id.hex(), older.session_id.hex()]
        page = await call(client, "sessions_list", limit=1)
        rest = await call(client, "sessions_list", limit=1,
                          cursor=page.structured_content["next_cursor"])  # fmt: skip
        assert [s["session_id"] for s in rest.structured_content["sessions"]] == ids[1:]
        only = await call(client, "sessions_list", route="paid", status="open")
        assert [s["session_id"] for s in only.structured_content["sessions"]] == ids[1:]

        shown = await call(client, "sessions_show", session_id=older.session_id.hex().upper())
        assert not shown.is_error, text_of(shown)
        expected = await admin_json(gw, f"/admin/sessions/{older.session_id.hex()}")
        assert shown.structured_content == expected
        assert [d["amount_msat"] for d in expected["deposits"]] == [100_000, 50_000]
        for result in (listed, shown):
            no_secrets(result, older, newer)

        unknown = await call(client, "sessions_show", session_id="ab" * 32)
        assert error_of(unknown, "sessions_show") == f"no session with id {'ab' * 32}"
        bad = await call(client, "sessions_show", session_id="not-a-session")
        assert error_of(bad, "sessions_show").startswith("expected a session id")
        assert "not-a-session" not in error_of(bad, "sessions_show")
        wrong = await call(client, "sessions_list", status="gone")
        assert error_of(wrong, "sessions_list") == "status must be one of: open, closed"
        cursor = await call(client, "sessions_list", cursor="x")
        assert error_of(cursor, "sessions_list") == "cursor: bad cursor"


async def test_close_is_a_write(gw: InProcess, api: ApiBackend) -> None:
    older, _ = await seed(gw)
    async with Client(mcp_tools.build_server(api, allow_writes=False)) as client:
        refused = await call(client, "sessions_close", session_id=older.session_id.hex())
        assert error_of(refused, "sessions_close") == REFUSAL.format("sessions_close")
    stored = await gw.store.get_session(older.session_id)
    assert stored is not None
    assert stored.status == "open"  # nothing happened

    async with Client(mcp_tools.build_server(api, allow_writes=True)) as client:
        closed = await call(client, "sessions_close", session_id=older.session_id.hex())
        assert not closed.is_error, text_of(closed)
        body = closed.structured_content
        assert (body["closed"], body["refund_status"]) == (True, "failed")  # LND is not there
        session = body["session"]
        assert (session["status"], session["close_reason"]) == ("closed", "admin")
        assert (session["refund_msat"], session["refund_state"]) == (130_000, "failed")
        no_secrets(closed, older)
        again = await call(client, "sessions_close", session_id=older.session_id.hex())
        assert not again.is_error
        assert (again.structured_content["closed"], again.structured_content["refund_status"]) == (
            False, None,
        )  # fmt: skip
        gone = await call(client, "sessions_close", session_id="cd" * 32)
        assert error_of(gone, "sessions_close") == f"no session with id {'cd' * 32}"
    assert await gw.metric("l402_sessions_closed_total", route="paid", reason="admin") == 1
    assert await gw.metric("l402_session_refunds_total", route="paid", result="failed") == 1
