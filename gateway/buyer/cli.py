"""`l402-buyer`: the EP212 rehearsal (`ep212`) and a generic paying `fetch`.

Exit codes: 0 success, 1 the run failed (with `--json`, `{"ok": false,
"error": ...}` on stdout), 2 bad usage. Output never contains a macaroon or
preimage: payments are identified by `preimage:<16 hex>` proof references.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from gateway.buyer.cache import CredentialCache
from gateway.buyer.client import ApprovalRequest, FetchResult, L402Client
from gateway.buyer.ep212 import run_ep212
from gateway.buyer.errors import BuyerError
from gateway.buyer.payers import LndPayer, Payer, WalletExecutorPayer
from gateway.buyer.policy import SpendPolicy
from gateway.buyer.settings import Ep212Settings, PayerSettings


@asynccontextmanager
async def open_payer(
    settings: PayerSettings, session: aiohttp.ClientSession
) -> AsyncIterator[Payer]:
    """The configured payer; an LND connection is closed on exit."""
    if settings.executor is not None:
        ex = settings.executor
        yield WalletExecutorPayer(ex.base_url, ex.auth_token, ex.timeout_ms, session)
        return
    assert settings.lnd is not None
    from gateway.lightning.client import LndClient

    lnd = settings.lnd
    client = LndClient.connect(lnd.host, tls_cert=lnd.tls_cert, macaroon=lnd.macaroon)
    try:
        yield LndPayer(client, lnd.fee_limit_msat, lnd.timeout_seconds)
    finally:
        await client.close()


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120, connect=15))


async def _ep212(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    payer_settings = PayerSettings.from_env(env)
    settings = Ep212Settings.from_env(
        env,
        mode=args.mode,
        artifact_dir=Path(args.artifact_dir) if args.artifact_dir else None,
        wallet_backend=payer_settings.backend,
    )
    async with _session() as session, open_payer(payer_settings, session) as payer:
        return await run_ep212(settings, session, payer)


def _report_ep212(summary: Mapping[str, Any]) -> str:
    s, a, b = summary["sats4ai"], summary["openAgentsRoute"], summary["overCap"]
    return "\n".join(
        [
            f"EP212 {summary['mode']} run {summary['requestId']} "
            f"via {summary['walletBackend']}: OK",
            f"  sats4ai: paid {s['firstAmountMsats']} msat ({s['firstProofReference']}), "
            f"repeat cacheHit={str(s['cacheHit']).lower()} (payer calls "
            f"{s['payerCallsAfterFirst']} -> {s['payerCallsAfterSecond']})",
            f"  route A: paid {a['paidAmountMsats']} msat ({a['proofReference']}), "
            f"repeat {a['repeatCacheStatus']} with no new payment",
            f"  route B: quoted {b['quotedAmountMsats']} msat, blocked {b['denyReasonCode']} "
            f"(cap {b['maxSpendMsats']}), payer calls {b['payerCallsBefore']} -> "
            f"{b['payerCallsAfter']}",
            f"  artifacts: {summary['artifacts']['summaryPath']}, "
            f"{summary['artifacts']['eventsPath']}",
        ]
    )


def _fetch_report(result: FetchResult) -> dict[str, Any]:
    denied = result.denied
    return {
        "ok": result.ok,
        "status": result.status,
        "outcome": result.outcome.value,
        "paid": result.paid,
        "cacheStatus": result.cache_status.value,
        "quoteMsats": result.quote_msats,
        "amountMsats": result.payment.amount_msats if result.payment else None,
        "paymentId": result.payment.payment_id if result.payment else None,
        "proofReference": result.payment.proof_reference if result.payment else None,
        "denyReasonCode": denied.reason_code.value if denied and denied.reason_code else None,
        "error": str(result.error) if result.error else None,
        "body": result.body.decode("utf-8", errors="replace"),
    }


async def _ask(request: ApprovalRequest) -> bool:
    prompt = (
        f"Pay {request.amount_msats} msat to {request.host} (cap {request.cap_msats} msat)"
        f"{' for ' + repr(request.description) if request.description else ''}? [y/N] "
    )
    answer = await asyncio.to_thread(input, prompt)
    return answer.strip().lower() in ("y", "yes")


def _parse_headers(values: Sequence[str]) -> dict[str, str] | None:
    """`Name: value` options as a dict; None if any is not of that form."""
    headers: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            return None
        headers[name.strip()] = text.strip()
    return headers


async def _fetch(
    args: argparse.Namespace, env: Mapping[str, str], headers: Mapping[str, str]
) -> FetchResult:
    payer_settings = PayerSettings.from_env(env)
    policy = SpendPolicy(
        max_spend_msats=args.max_msats,
        allowed_hosts=args.allow_host or None,
        blocked_hosts=args.block_host or (),
        expected_network=args.network,
    )
    cache = CredentialCache(Path(args.cache) if args.cache else None)
    async with _session() as session, open_payer(payer_settings, session) as payer:
        client = L402Client(session, payer, policy, cache, approval=_ask if args.confirm else None)
        return await client.fetch(
            args.method, args.url, data=args.data, headers=headers, force_refresh=args.refresh
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l402-buyer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ep = sub.add_parser("ep212", help="run the EP212 rehearsal (settings from the environment)")
    ep.add_argument("--json", action="store_true", help="print summary JSON")
    ep.add_argument("--mode", choices=("regtest", "live"), default="regtest")
    ep.add_argument("--artifact-dir", help="where summary.json and events.jsonl go")
    fetch = sub.add_parser("fetch", help="request a URL, paying an L402 challenge within a cap")
    fetch.add_argument("url")
    fetch.add_argument("--max-msats", type=int, required=True, help="most one payment may cost")
    fetch.add_argument("--method", default="GET")
    fetch.add_argument("--data", help="request body")
    fetch.add_argument("--header", action="append", help="'Name: value' (repeatable)")
    fetch.add_argument("--json", action="store_true", help="print a JSON report")
    fetch.add_argument("--network", help="required invoice network (bc, tb, tbs, bcrt)")
    fetch.add_argument("--allow-host", action="append", help="allowlist (repeatable)")
    fetch.add_argument("--block-host", action="append", help="blocklist (repeatable)")
    fetch.add_argument("--cache", help="credential cache file (created 0600)")
    fetch.add_argument("--refresh", action="store_true", help="ignore a cached credential")
    fetch.add_argument("--confirm", action="store_true", help="ask before paying")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ if env is None else env
    if args.command == "ep212":
        try:
            summary = asyncio.run(_ep212(args, env))
        except Exception as exc:  # any failure must still produce the {"ok": false} contract
            if args.json:
                print(json.dumps({"ok": False, "error": str(exc)}))
            else:
                print(f"EP212 run failed: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(summary, indent=2) if args.json else _report_ep212(summary))
        return 0
    if args.max_msats < 0:
        print("--max-msats must not be negative", file=sys.stderr)
        return 2
    headers = _parse_headers(args.header or [])
    if headers is None:
        print("--header must be 'Name: value'", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(_fetch(args, env, headers))
    except (BuyerError, OSError, ValueError) as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        else:
            print(f"fetch failed: {exc}", file=sys.stderr)
        return 1
    report = _fetch_report(result)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        sys.stdout.write(report["body"])
        extra = f" ({report['proofReference']})" if report["proofReference"] else ""
        if report["denyReasonCode"]:
            extra = f": {report['denyReasonCode']} (quote {report['quoteMsats']} msat)"
        elif report["error"]:
            proof = f" ({report['proofReference']})" if report["proofReference"] else ""
            extra = f": {report['error']}{proof}"
        print(f"\n[{result.status} {result.outcome.value}{extra}]", file=sys.stderr)
    return 0 if result.ok else 1
