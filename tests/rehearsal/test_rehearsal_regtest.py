"""The whole EP212 rehearsal (`make rehearse`) on the session's regtest network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.regtest.network import Descriptor
from gateway.rehearsal.__main__ import run_rehearsal
from gateway.rehearsal.checks import SUMMARY_KEYS

pytestmark = pytest.mark.regtest

STAGES = {
    "sats4ai.challenge",
    "sats4ai.first",
    "sats4ai.cached",
    "sats4ai.bundle",
    "openagents.route_success",
    "openagents.over_cap_block",
    # The Payment-scheme step: a charge on route A, then a session's challenge, open and close.
    "payment.charge",
    "session.challenge",
    "session.open",
    "session.close",
    "payment.session",
}
TOP_UP_STAGES = {"session.stream", "session.topUp"}  # when the stream outran the deposit


def test_ep212_rehearsal_end_to_end(regtest: Descriptor, tmp_path: Path) -> None:
    result = run_rehearsal(regtest, tmp_path)
    assert result.problems == []

    on_disk = json.loads((result.artifact_dir / "summary.json").read_text())
    assert on_disk == result.summary
    for section, keys in SUMMARY_KEYS.items():
        assert keys <= set(on_disk[section]), section
    assert on_disk["walletBackend"] == "lnd"
    # The metered stand-in: the seller's books equal the buyer's (check_metrics said so).
    bundle, books = on_disk["sats4aiBundle"], on_disk["sellerBooks"]
    assert (books["revenueMsats"], books["unitsSold"], books["unitsServed"]) == (
        bundle["paidMsats"],
        bundle["unitsBought"],
        bundle["unitsUsed"],
    )
    assert bundle["payments"] == 2
    # The Payment scheme: a charge with its receipt, a session refunded what it did not use.
    payment = on_disk["paymentScheme"]
    assert payment["charge"]["receipt"]["status"] == "success"
    session = payment["session"]
    assert session["refund"]["refundStatus"] == "succeeded"
    assert session["refund"]["refundSats"] == (
        session["depositedSats"] - session["debits"]["debitedSats"]
    )
    assert session["streamEvents"] > 0
    assert set(on_disk["artifacts"]) >= {"summaryPath", "eventsPath"}

    events = [
        json.loads(line) for line in (result.artifact_dir / "events.jsonl").read_text().splitlines()
    ]
    assert STAGES <= {e["stage"] for e in events} <= STAGES | TOP_UP_STAGES
    for event in events:
        assert set(event) == {"ts", "stage", "requestId", "status", "details"}
    text = (result.artifact_dir / "events.jsonl").read_text()
    assert "preimageHex" not in text
    assert "macaroon" not in text.lower()

    # The seller's processes were stopped by the rehearsal itself.
    log = (tmp_path / "seller" / "gateway.log").read_text()
    assert "shutting down" in log
    # No secret reached the gateway's logs or metrics: every lsat macaroon starts with
    # the same base64 prefix, and the proof reference is the preimage's first 16 hex.
    metrics = (tmp_path / "seller" / "metrics.txt").read_text()
    proof = on_disk["openAgentsRoute"]["proofReference"].removeprefix("preimage:")
    for text in (log, metrics):
        assert "AgEEbHNhdA" not in text
        assert proof not in text
    assert '"outcome":"paid"' in log
