"""The EP212 runner end to end against a three-route seller, in-process and via the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import bolt11
import pytest
from aiohttp.test_utils import TestServer

from gateway.buyer.cli import main
from gateway.buyer.ep212 import METERED_STAGES, STAGES, run_ep212
from gateway.buyer.errors import Ep212Error
from gateway.buyer.settings import Ep212Settings

from .fakes import Executor, FakePayer, RouteSpec, Seller

SATS4AI = "/api/l402/text-generation"
ROUTE_A = "/ep212/premium-signal"
ROUTE_B = "/ep212/expensive-signal"

# Field names from L402-FACTS.md section 3, verbatim.
SATS4AI_FIELDS = {
    "endpointUrl", "challengeStatusCode", "firstStatusCode", "firstPaid", "firstPaymentId",
    "firstAmountMsats", "firstProofReference", "firstCacheStatus", "firstResponseBytes",
    "firstResponseSha256", "secondStatusCode", "secondPaid", "secondCacheStatus", "cacheHit",
    "payerCallsAfterFirst", "payerCallsAfterSecond",
}  # fmt: skip
ROUTE_FIELDS = {
    "endpointUrl", "challengeStatusCode", "paidStatusCode", "paidAmountMsats", "paymentId",
    "proofReference", "responseBytes", "responseSha256",
}  # fmt: skip
OVER_CAP_FIELDS = {
    "endpointUrl", "challengeStatusCode", "quotedAmountMsats", "maxSpendMsats", "blocked",
    "denyReasonCode", "payerCallsBefore", "payerCallsAfter",
}  # fmt: skip


def _settings(server: TestServer, tmp_path: Path, **kw: Any) -> Ep212Settings:
    return Ep212Settings(
        sats4ai_url=str(server.make_url(SATS4AI)),
        route_a_url=str(server.make_url(ROUTE_A)),
        route_b_url=str(server.make_url(ROUTE_B)),
        artifact_dir=tmp_path / "ep212",
        request_id="ep212-test",
        **kw,
    )


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _read(path).splitlines()]


def _read(path: Path | str) -> str:
    return Path(path).read_text()


async def test_run_ep212_reproduces_the_rehearsal(
    seller_server: tuple[Seller, TestServer], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    seller, server = seller_server
    payer = FakePayer(seller)
    summary = await run_ep212(_settings(server, tmp_path), session, payer)

    assert list(summary) == [
        "ok", "requestId", "mode", "walletBackend", "sats4ai", "openAgentsRoute", "overCap",
        "artifacts",
    ]  # fmt: skip
    assert (summary["ok"], summary["mode"], summary["walletBackend"]) == (True, "regtest", "lnd")
    s, a, b = summary["sats4ai"], summary["openAgentsRoute"], summary["overCap"]
    assert set(s) == SATS4AI_FIELDS
    assert set(a) >= ROUTE_FIELDS
    assert set(b) == OVER_CAP_FIELDS

    assert (s["challengeStatusCode"], s["firstStatusCode"], s["firstPaid"]) == (402, 200, True)
    assert s["firstAmountMsats"] == 42_000
    preimages = {h.hex(): p.hex() for h, p in seller.preimages.items()}
    assert s["firstProofReference"] == f"preimage:{preimages[s['firstPaymentId']][:16]}"
    assert s["firstCacheStatus"] == "miss"
    assert (s["secondStatusCode"], s["secondPaid"], s["secondCacheStatus"]) == (
        200,
        True,
        "invalid",
    )
    assert s["cacheHit"] is False
    assert (s["payerCallsAfterFirst"], s["payerCallsAfterSecond"]) == (1, 2)

    assert seller.served[ROUTE_A] == 2  # paid once, served twice
    assert (a["challengeStatusCode"], a["paidStatusCode"], a["paidAmountMsats"]) == (
        402,
        200,
        10_000,
    )
    assert a["proofReference"] == f"preimage:{preimages[a['paymentId']][:16]}"
    assert len(a["responseSha256"]) == 64
    assert (a["repeatCacheHit"], a["repeatPaid"], a["repeatCacheStatus"]) == (True, False, "hit")
    assert a["payerCallsAfterPaid"] == a["payerCallsAfterRepeat"] == 3

    assert (b["challengeStatusCode"], b["quotedAmountMsats"], b["maxSpendMsats"]) == (
        402, 250_000, 100_000,
    )  # fmt: skip
    assert (b["blocked"], b["denyReasonCode"]) == (True, "amount_over_cap")
    assert b["payerCallsBefore"] == b["payerCallsAfter"] == 3
    assert payer.calls == 3
    assert len({r["requestId"] for r in payer.requests}) == 3

    text = _read(summary["artifacts"]["summaryPath"])
    assert json.loads(text) == summary
    assert text.startswith('{\n  "ok": true')
    events = _events(Path(summary["artifacts"]["eventsPath"]))
    # The fake seller sells per request: no bundle to draw down.
    assert [e["stage"] for e in events] == [s for s in STAGES if s not in METERED_STAGES]
    for event in events:
        assert list(event) == ["ts", "stage", "requestId", "status", "details"]
        assert event["status"] == "ok"
        assert event["requestId"].startswith("ep212-test-")
    dump = text + _read(summary["artifacts"]["eventsPath"])
    assert not any(p in dump for p in preimages.values())


async def test_response_hash_is_of_the_body(
    seller_server: tuple[Seller, TestServer], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    seller, server = seller_server
    summary = await run_ep212(_settings(server, tmp_path), session, FakePayer(seller))
    route = summary["openAgentsRoute"]
    body = json.dumps(
        {"ok": True, "source": "openagents.ep212", "route": ROUTE_A, "signals": [1, 2]}
    ).encode()
    assert (route["responseBytes"], route["responseSha256"]) == (
        len(body),
        hashlib.sha256(body).hexdigest(),
    )


async def test_reusable_sats4ai_stand_in_is_a_cache_hit(
    seller_server: tuple[Seller, TestServer],
    session: aiohttp.ClientSession,
    tmp_path: Path,
    routes: dict[str, RouteSpec],
) -> None:
    routes[SATS4AI].mode = "reusable"
    seller, server = seller_server
    summary = await run_ep212(_settings(server, tmp_path), session, FakePayer(seller))
    s = summary["sats4ai"]
    assert (s["cacheHit"], s["secondPaid"], s["secondCacheStatus"]) == (True, False, "hit")
    assert s["payerCallsAfterSecond"] == 1


@pytest.mark.parametrize(
    ("max_spend", "route_a_mode", "code", "stage"),
    [
        (300_000, "reusable", "over_cap_not_blocked", "openagents.over_cap_block"),
        (100_000, "per_request", "route_not_cached", "openagents.route_success"),
    ],
)
async def test_failures_are_reported(
    seller_server: tuple[Seller, TestServer],
    session: aiohttp.ClientSession,
    tmp_path: Path,
    routes: dict[str, RouteSpec],
    max_spend: int,
    route_a_mode: str,
    code: str,
    stage: str,
) -> None:
    routes[ROUTE_A].mode = route_a_mode
    seller, server = seller_server
    settings = _settings(server, tmp_path, max_spend_msats=max_spend)
    with pytest.raises(Ep212Error) as info:
        await run_ep212(settings, session, FakePayer(seller))
    assert info.value.code == code
    summary = json.loads((settings.artifact_dir / "summary.json").read_text())
    assert summary["ok"] is False
    assert code in summary["error"]
    last = _events(settings.artifact_dir / "events.jsonl")[-1]
    assert (last["stage"], last["status"]) == (stage, "error")


def test_cli_json_failure_contract(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["ep212", "--json", "--artifact-dir", str(tmp_path)], env={})
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["ok"] is False
    assert "OA_LIGHTNING" in out["error"]


async def _run_cli(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.buyer", *args,
        env={"PATH": os.environ.get("PATH", ""), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def cli_env(
    seller_server: tuple[Seller, TestServer], executor_server: tuple[Executor, TestServer]
) -> dict[str, str]:
    server, (executor, executor_http) = seller_server[1], executor_server
    return {
        "OA_LIGHTNING_OPS_EP212_SATS4AI_URL": str(server.make_url(SATS4AI)),
        "OA_LIGHTNING_OPS_EP212_ROUTE_A_URL": str(server.make_url(ROUTE_A)),
        "OA_LIGHTNING_OPS_EP212_ROUTE_B_URL": str(server.make_url(ROUTE_B)),
        "OA_LIGHTNING_WALLET_EXECUTOR_BASE_URL": str(executor_http.make_url("/")),
        "OA_LIGHTNING_WALLET_EXECUTOR_AUTH_TOKEN": executor.token,
        "OA_LIGHTNING_WALLET_EXECUTOR_TIMEOUT_MS": "10000",
    }


async def test_cli_ep212_through_the_wallet_executor(
    cli_env: dict[str, str], executor_server: tuple[Executor, TestServer], tmp_path: Path
) -> None:
    executor = executor_server[0]
    code, out, err = await _run_cli(
        ["ep212", "--json", "--mode", "regtest", "--artifact-dir", str(tmp_path / "a")], cli_env
    )
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["ok"], summary["walletBackend"]) == (True, "wallet_executor")
    assert summary["overCap"]["denyReasonCode"] == "amount_over_cap"
    assert len(executor.received) == 3
    assert len({body["requestId"] for body in executor.received}) == 3
    assert (tmp_path / "a" / "summary.json").exists()
    assert executor.token not in out + err

    code, out, _ = await _run_cli(["ep212", "--artifact-dir", str(tmp_path / "b")], cli_env)
    assert code == 0
    assert "route B: quoted 250000 msat, blocked amount_over_cap" in out


async def test_cli_ep212_failure_exit_code(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = {**cli_env, "OA_LIGHTNING_OPS_EP212_MAX_SPEND_MSATS": "1000000"}
    code, out, _ = await _run_cli(["ep212", "--json", "--artifact-dir", str(tmp_path)], env)
    assert code == 1
    result = json.loads(out)
    assert result["ok"] is False
    assert "over_cap_not_blocked" in result["error"]


@pytest.mark.parametrize(
    ("path", "stage", "calls"),
    [(SATS4AI, "sats4ai.first", 1), (ROUTE_A, "openagents.route_success", 3)],
)
async def test_paid_retry_failure_is_reported_with_its_proof(
    seller_server: tuple[Seller, TestServer],
    session: aiohttp.ClientSession,
    tmp_path: Path,
    routes: dict[str, RouteSpec],
    path: str,
    stage: str,
    calls: int,
) -> None:
    routes[path].drop_paid = True  # the seller drops the paid retry's connection
    seller, server = seller_server
    payer = FakePayer(seller)
    settings = _settings(server, tmp_path)
    with pytest.raises(Ep212Error) as info:
        await run_ep212(settings, session, payer)
    assert info.value.code == "paid_retry_failed"
    assert payer.calls == calls  # no second payment for the failed step
    assert seller.challenges[path] == 1  # and no loop back to the seller
    preimage = seller.preimages[bytes.fromhex(_hash_of(payer))]
    proof = f"preimage:{preimage.hex()[:16]}"
    last = _events(settings.artifact_dir / "events.jsonl")[-1]
    assert (last["stage"], last["status"]) == (stage, "error")
    assert last["details"]["code"] == "paid_retry_failed"
    assert last["details"]["outcome"] == "paid_retry_failed"
    assert last["details"]["proofReference"] == proof
    assert last["details"]["amountMsats"] == routes[path].price_msats
    summary = json.loads((settings.artifact_dir / "summary.json").read_text())
    assert summary["ok"] is False
    assert proof in summary["error"]
    assert preimage.hex() not in _read(settings.artifact_dir / "events.jsonl")


def _hash_of(payer: FakePayer) -> str:
    """The payment hash of the last invoice the payer paid."""
    return str(bolt11.decode(payer.requests[-1]["invoice"]).payment_hash)
