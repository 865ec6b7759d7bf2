"""The admin API's Payment-scheme sessions on a real in-process gateway (edge listeners,
admin app, running seller) over a real SQLite store holding real sessions.

Sessions are made with the store's own ops (tests.support.sessions). The
refund payer is real (LndClient with `lightning.refund_macaroon`) aimed at a
port nothing listens on, so a refund's one attempt really fails and is
recorded as failed; tests/gateway/test_admin_sessions_regtest.py closes a
session a buyer opened on regtest and sees the refund reach the buyer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDictProxy

from gateway.server.session_wire import SESSION_KEYS
from tests.ops.support import bearer, write_secret
from tests.server.harness import InProcess, in_process
from tests.support.sessions import Seeded, open_session, spend, top_up

NOW = int(time.time())
SESSIONS_CALLS = [
    ("GET", "/admin/sessions"),
    ("GET", "/admin/sessions/" + "00" * 32),
    ("POST", "/admin/sessions/" + "00" * 32 + "/close"),
]


def payment_top(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Top-level keys: sessions on, a refund macaroon, the admin API."""
    for name in ("tls.cert", "invoice.macaroon", "refund.macaroon"):
        (tmp_path / name).write_text("not read until a refund is attempted\n")
    return {
        "admin": {"token_file": str(write_secret(tmp_path / "admin.token"))},
        "lnd": {"host": "127.0.0.1:1", "tls_cert": "tls.cert", "macaroon": "invoice.macaroon",
                "refund_macaroon": "refund.macaroon"},
        "payment": {"realm": "test.example", "sessions": {"enabled": True}},
        **extra,
    }  # fmt: skip


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path, **payment_top(tmp_path)) as h:
        yield h


async def call(
    h: InProcess, method: str, path: str, base: str | None = None, **kw: Any
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    async with h.session.request(method, (base or h.admin) + path, headers=bearer(), **kw) as r:
        return r.status, await r.json(), r.headers


def no_secrets(body: Any, *seeded: Seeded) -> None:
    text = str(body)
    for s in seeded:
        assert s.preimage.hex() not in text
        assert s.return_invoice not in text
        assert s.return_invoice[:40] not in text


@pytest.mark.parametrize(("method", "path"), SESSIONS_CALLS)
async def test_every_sessions_call_needs_the_secret(gw: InProcess, method: str, path: str) -> None:
    async with gw.session.request(method, gw.admin + path) as r:
        assert (r.status, await r.json()) == (401, {"error": "unauthorized"})
    async with gw.session.request(method, gw.url(path), headers=bearer()) as r:
        assert r.status == 404  # and never on the public listener


async def test_list_filter_page_and_show(gw: InProcess) -> None:
    first = await open_session(gw.store, "paid", deposit_msat=200_000, unit_msat=10_000, now=NOW)
    top = await top_up(gw.store, first, 100_000, NOW + 1)
    await spend(gw.store, first, 10_000, NOW + 2)
    second = await open_session(gw.store, "once", deposit_msat=42_000, unit_msat=42_000,
                                now=NOW + 5)  # fmt: skip
    third = await open_session(gw.store, "paid", deposit_msat=10_000, unit_msat=10_000,
                               now=NOW + 9)  # fmt: skip
    await gw.store.close_session(third.session_id, "client", NOW + 10)

    status, body, _ = await call(gw, "GET", "/admin/sessions")
    assert status == 200
    ids = [s["session_id"] for s in body["sessions"]]
    assert ids == [third.session_id.hex(), second.session_id.hex(), first.session_id.hex()]
    assert body["next_cursor"] is None
    one = body["sessions"][2]
    assert list(one) == list(SESSION_KEYS)
    assert (one["route"], one["status"], one["unit_msat"]) == ("paid", "open", 10_000)
    assert (one["deposited_msat"], one["spent_msat"], one["balance_msat"]) == (
        300_000, 10_000, 290_000,
    )  # fmt: skip
    assert one["return_payment_hash"] == first.return_hash.hex()
    assert one["return_invoice_expires_at"] == NOW + 30 * 86_400
    assert (one["refund_state"], one["closed_at"]) == (None, None)
    no_secrets(body, first, second, third)

    seen, cursor = [], None
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        status, page, _ = await call(gw, "GET", "/admin/sessions", params=params)
        assert status == 200
        seen += [s["session_id"] for s in page["sessions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids

    for params, expected in (
        ({"status": "open"}, [second, first]),
        ({"status": "closed"}, [third]),
        ({"route": "once"}, [second]),
        ({"status": "open", "route": "paid"}, [first]),
        ({"refund": "pending"}, [third]),
        ({"refund": "failed"}, []),
    ):
        status, page, _ = await call(gw, "GET", "/admin/sessions", params=params)
        assert status == 200, params
        assert [s["session_id"] for s in page["sessions"]] == [
            s.session_id.hex() for s in expected
        ], params
    for params in ({"status": "opened"}, {"refund": "nope"}, {"limit": "0"}, {"limit": "1001"},
                   {"cursor": "x"}):  # fmt: skip
        status, bad, _ = await call(gw, "GET", "/admin/sessions", params=params)
        assert status == 400, params
        assert bad["error"]

    status, shown, _ = await call(gw, "GET", f"/admin/sessions/{first.session_id.hex()}")
    assert status == 200
    assert shown["session"] == one
    assert shown["deposits"] == [
        {"payment_hash": first.session_id.hex(), "amount_msat": 200_000, "credited_at": NOW},
        {"payment_hash": top.hex(), "amount_msat": 100_000, "credited_at": NOW + 1},
    ]
    no_secrets(shown, first)
    status, _, _ = await call(gw, "GET", "/admin/sessions/" + "ab" * 32)
    assert status == 404
    for bad_id in ("xyz", "ab" * 31, "zz" * 32):
        status, answer, _ = await call(gw, "GET", f"/admin/sessions/{bad_id}")
        assert status == 400, bad_id
        assert "session id" in answer["error"]


async def test_close_refunds_once_through_the_sellers_close(gw: InProcess) -> None:
    seeded = await open_session(gw.store, "paid", deposit_msat=200_000, unit_msat=10_000, now=NOW)
    await spend(gw.store, seeded, 30_000, NOW + 1)
    empty = await open_session(gw.store, "paid", deposit_msat=10_000, unit_msat=10_000, now=NOW)
    await spend(gw.store, empty, 10_000, NOW + 1)
    path = f"/admin/sessions/{seeded.session_id.hex()}/close"

    status, body, _ = await call(gw, "POST", path)
    assert status == 200, body
    assert (body["closed"], body["refund_status"]) == (True, "failed")  # LND is not there
    session = body["session"]
    assert (session["status"], session["close_reason"]) == ("closed", "admin")
    assert (session["refund_msat"], session["refund_state"]) == (170_000, "failed")
    assert session["balance_msat"] == 0
    assert "UNAVAILABLE" in session["refund_note"]
    no_secrets(body, seeded)
    stored = await gw.store.get_session(seeded.session_id)
    assert stored is not None
    assert (stored.status, stored.refund_state) == ("closed", "failed")

    status, again, _ = await call(gw, "POST", path)  # closed already: nothing more is paid
    assert (status, again["error"]) == (409, "the session is not open")
    assert again["session"]["refund_state"] == "failed"
    assert await gw.metric("l402_sessions_closed_total", route="paid", reason="admin") == 1
    assert await gw.metric("l402_session_refunds_total", route="paid", result="failed") == 1

    status, nothing, _ = await call(gw, "POST", f"/admin/sessions/{empty.session_id.hex()}/close")
    assert (status, nothing["refund_status"]) == (200, "skipped")  # nothing left to pay back
    assert await gw.metric("l402_session_refunds_total", route="paid") == 1  # no attempt
    status, _, _ = await call(gw, "POST", "/admin/sessions/" + "cd" * 32 + "/close")
    assert status == 404
    status, _, _ = await call(gw, "POST", "/admin/sessions/nope/close")
    assert status == 400


async def test_a_refund_note_never_quotes_an_invoice(gw: InProcess) -> None:
    """LND's refusals may name the invoice they were given: the note shows it redacted."""
    seeded = await open_session(gw.store, "paid", deposit_msat=20_000, unit_msat=10_000, now=NOW)
    assert await gw.store.close_session(seeded.session_id, "client", NOW + 1) is not None
    assert await gw.store.claim_refund(seeded.session_id, NOW + 1, NOW + 60)
    note = f"invalid payment request {seeded.return_invoice}: expired " + "x" * 400
    assert await gw.store.finish_refund(seeded.session_id, False, None, note)
    status, body, _ = await call(gw, "GET", f"/admin/sessions/{seeded.session_id.hex()}")
    assert status == 200
    shown = body["session"]["refund_note"]
    assert shown.startswith("invalid payment request <invoice>: expired x")
    assert len(shown) == 300
    no_secrets(body, seeded)
