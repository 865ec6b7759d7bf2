"""`l402-gateway sessions list|show|close` as an operator runs it (subprocesses), straight on
a real SQLite store and through a running in-process gateway's admin API: both print the
same shapes, and a close pays the refund through the same close path.

The refund payer is real (LndClient) aimed at a port nothing listens on: its
one attempt fails and is recorded as failed. tests/gateway/test_admin_sessions_regtest.py
sees a refund succeed on regtest.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from gateway.store import open_store
from tests.ops.support import cli
from tests.ops.test_admin_sessions import payment_top
from tests.server.harness import in_process
from tests.support.sessions import Seeded, open_session, spend

NOW = int(time.time())


def store_config(tmp_path: Path, *, refund_macaroon: bool = True) -> Path:
    """routes.yaml on a SQLite file; LND at a port nothing listens on."""
    top = payment_top(tmp_path)
    if not refund_macaroon:
        del top["lnd"]["refund_macaroon"]
        top["payment"]["sessions"]["enabled"] = False  # sessions need it to be enabled
    doc = {
        **{k: v for k, v in top.items() if k != "admin"},
        "store": {"url": f"sqlite:///{tmp_path / 'tokens.db'}"},
        "routes": [{"name": "paid", "path": "^/paid", "upstream": "http://127.0.0.1:9/",
                    "price_sats": 10, "schemes": ["l402", "payment"]}],
    }  # fmt: skip
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def seed(tmp_path: Path) -> tuple[Seeded, Seeded]:
    """(a session with 170000 msat left, one with nothing left) in tmp_path/tokens.db."""
    store = await open_store(f"sqlite:///{tmp_path / 'tokens.db'}")
    try:
        full = await open_session(store, "paid", deposit_msat=200_000, unit_msat=10_000, now=NOW)
        await spend(store, full, 30_000, NOW + 1)
        empty = await open_session(store, "paid", deposit_msat=10_000, unit_msat=10_000,
                                   now=NOW + 2)  # fmt: skip
        await spend(store, empty, 10_000, NOW + 3)
    finally:
        await store.close()
    return full, empty


def no_secrets(text: str, *seeded: Seeded) -> None:
    for s in seeded:
        assert s.preimage.hex() not in text
        assert s.return_invoice[:40] not in text


async def test_list_show_and_close_straight_on_the_store(tmp_path: Path) -> None:
    path = store_config(tmp_path)
    full, empty = await seed(tmp_path)
    config = ("--config", str(path), "--via", "store")

    listed = await cli("sessions", "list", *config)
    assert listed.code == 0, listed.err
    lines = listed.out.splitlines()
    assert lines[1].startswith(empty.session_id.hex())  # newest first
    assert lines[2].split()[:4] == [full.session_id.hex(), "paid", "open", "170000"]
    page = json.loads((await cli("sessions", "list", *config, "--json", "--limit", "1")).out)
    assert [s["session_id"] for s in page["sessions"]] == [empty.session_id.hex()]
    rest = await cli("sessions", "list", *config, "--json", "--cursor", page["next_cursor"])
    assert [s["session_id"] for s in json.loads(rest.out)["sessions"]] == [full.session_id.hex()]

    shown = await cli("sessions", "show", full.session_id.hex(), *config)
    assert shown.code == 0, shown.err
    assert "balance        170000 msat" in shown.out
    assert "deposited      200000 msat" in shown.out
    assert f"return invoice payment hash {full.return_hash.hex()}" in shown.out
    assert "deposit        200000 msat at " in shown.out

    closed = await cli("sessions", "close", full.session_id.hex(), *config)
    assert closed.code == 1  # closed, but its one refund attempt failed (LND is not there)
    assert f"session {full.session_id.hex()} (paid): closed via the store;" in closed.out
    assert "refund 170000 msat: failed" in closed.out
    assert "UNAVAILABLE" in closed.out
    after = json.loads((await cli("sessions", "show", full.session_id.hex(), *config,
                                  "--json")).out)  # fmt: skip
    assert (after["session"]["status"], after["session"]["close_reason"]) == ("closed", "admin")
    assert after["session"]["refund_state"] == "failed"
    again = await cli("sessions", "close", full.session_id.hex(), *config)
    assert again.code == 1
    assert again.err.strip().endswith("not open (nothing done)")
    nothing = await cli("sessions", "close", empty.session_id.hex(), *config)
    assert (nothing.code, nothing.err) == (0, "")
    assert "refund nothing owed: skipped" in nothing.out
    failed = json.loads((await cli("sessions", "list", *config, "--refund", "failed",
                                   "--json")).out)  # fmt: skip
    assert [s["session_id"] for s in failed["sessions"]] == [full.session_id.hex()]
    for ran in (listed, shown, closed, again, nothing):
        no_secrets(ran.out + ran.err, full, empty)


async def test_closing_on_the_store_needs_the_refund_macaroon(tmp_path: Path) -> None:
    path = store_config(tmp_path, refund_macaroon=False)
    full, _ = await seed(tmp_path)
    ran = await cli("sessions", "close", full.session_id.hex(), "--config", str(path))
    assert ran.code == 2
    assert "lnd.refund_macaroon is not set" in ran.err
    shown = await cli("sessions", "show", full.session_id.hex(), "--config", str(path), "--json")
    assert json.loads(shown.out)["session"]["status"] == "open"  # nothing was done


async def test_bad_arguments_are_one_line(tmp_path: Path) -> None:
    path = store_config(tmp_path)
    config = ("--config", str(path), "--via", "store")
    for args, expected in (
        (("show", "nope"), "expected a session id (64 hex characters"),
        (("list", "--status", "gone"), "--status: status must be one of: open, closed"),
        (("list", "--refund", "x"), "--refund: refund must be one of: pending, paying"),
        (("list", "--limit", "0"), "--limit must be from 1 to 1000"),
        (("list", "--cursor", "x"), "--cursor: bad cursor"),
    ):
        ran = await cli("sessions", *args, *config)
        assert ran.code == 2, args
        assert expected in ran.err, (args, ran.err)
        assert len(ran.err.strip().splitlines()) == 1
    unknown = await cli("sessions", "show", "ab" * 32, *config)
    assert (unknown.code, unknown.err.strip()) == (
        1, f"l402-gateway: no session with id {'ab' * 32}",
    )  # fmt: skip


async def test_through_a_running_gateway_the_same_shapes_and_its_close(tmp_path: Path) -> None:
    top = payment_top(tmp_path, store={"url": f"sqlite:///{tmp_path / 'tokens.db'}"})
    async with in_process(tmp_path, **top) as gw:
        path = str(tmp_path / "routes.yaml")
        full, empty = await seed(tmp_path)
        listed = await cli("sessions", "list", "--config", path, "--via", "api", "--json")
        assert listed.code == 0, listed.err
        stored = await cli("sessions", "list", "--config", path, "--via", "store", "--json")
        assert json.loads(listed.out) == json.loads(stored.out)
        shown = await cli("sessions", "show", full.session_id.hex(), "--config", path, "--json")
        by_store = await cli("sessions", "show", full.session_id.hex(), "--config", path,
                             "--via", "store", "--json")  # fmt: skip
        assert json.loads(shown.out) == json.loads(by_store.out)

        closed = await cli("sessions", "close", full.session_id.hex(), "--config", path)
        assert closed.code == 1, closed.err
        assert "closed via the gateway's admin API" in closed.out
        assert "refund 170000 msat: failed" in closed.out
        # the running gateway's own closer did it: its metrics count the close
        assert await gw.metric("l402_sessions_closed_total", route="paid", reason="admin") == 1
        assert await gw.metric("l402_session_refunds_total", route="paid", result="failed") == 1
        done = await cli("sessions", "close", empty.session_id.hex(), "--config", path,
                         "--via", "api", "--json")  # fmt: skip
        assert done.code == 0, done.err
        body = json.loads(done.out)
        assert (body["closed"], body["refund_status"]) == (True, "skipped")
        no_secrets(listed.out + shown.out + closed.out + done.out, full, empty)
