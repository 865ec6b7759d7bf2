"""`l402-buyer session`: one Payment-scheme session, run like an agent would, with artifacts.

    l402-buyer session URL --max-msats 20000 --max-deposit-msats 500000 \\
        [--method POST --data '{...}'] [--requests 3] [--stream] [--artifact-dir DIR] [--json]

Opens a session (the deposit and unit price checked against the caps before
anything is paid; the refund goes to a zero-amount invoice on the buyer's own
LND), sends `--requests` bearer requests (`--stream`: each one's event stream
read to its end, topping up when the seller asks), closes it, and writes
summary.json and events.jsonl: scheme, deposits, debits, the refund the
seller reported. Needs an LND payer (the wallet executor cannot create the
return invoice). Nothing secret is printed or written.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import aiohttp

from gateway.buyer import console
from gateway.buyer.artifacts import Artifacts
from gateway.buyer.errors import SettingsError
from gateway.buyer.payers import LndPayer
from gateway.buyer.policy import SpendPolicy
from gateway.buyer.session import LndReturnInvoices, PaymentSession

if TYPE_CHECKING:  # grpc loads only when a payer connects
    from gateway.lightning.lnd.node import LndClient

REQUEST_ID = "session"


async def run_session(
    args: argparse.Namespace, env: Mapping[str, str], http: aiohttp.ClientSession, payer: Any
) -> dict[str, Any]:
    if not isinstance(payer, LndPayer):
        raise SettingsError(
            "missing_setting", "a session needs an LND payer (L402_BUYER_LND_*): the refund "
            "goes to an invoice on the buyer's own node",
        )  # fmt: skip
    host = (urlsplit(args.url).hostname or "").lower()
    policy = SpendPolicy(
        max_spend_msats=args.max_msats,
        allowed_hosts=[host],
        expected_network=args.network,
        max_deposit_msats=args.max_deposit_msats,
    )
    artifacts = Artifacts(Path(args.artifact_dir)) if args.artifact_dir else None

    def event(stage: str, outcome: str, details: dict[str, Any]) -> None:
        if artifacts is not None:
            artifacts.event(stage, REQUEST_ID, outcome, details)

    returns = LndReturnInvoices(cast("LndClient", payer.client))
    session = PaymentSession(
        http, payer, returns, policy, args.url, host=host, request_id=REQUEST_ID, events=event,
        method=args.method,
    )  # fmt: skip
    body = _body(args.data)
    await session.open()
    try:
        for _ in range(args.requests):
            if args.stream:
                async for _event in session.stream(args.method, **body):
                    pass
            else:
                await session.request(args.method, **body)
    finally:
        await session.close()
    summary = session.summary()
    summary["ok"] = all(200 <= s < 300 for s in session.requests) and bool(session.closed)
    if artifacts is not None:
        artifacts.summary(summary)
    return summary


def _body(data: str | None) -> dict[str, Any]:
    if data is None:
        return {}
    try:
        return {"json": json.loads(data)}
    except ValueError:
        return {"data": data}


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        console.out(json.dumps(summary, indent=2) + "\n")
        return
    refund = summary.get("refund") or {}
    console.err(
        f"session {summary.get('sessionId')}: deposited {summary['depositedSats']} sat, "
        f"debited {summary['debits']['debitedSats']} sat over {summary['debits']['requests']} "
        f"request(s); refund {refund.get('refundSats')} sat ({refund.get('refundStatus')})"
    )
