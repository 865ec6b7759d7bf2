"""Log volume of a real gateway under floods, logging exactly as `serve --log-file` does.

Real sockets and real time here, so the counts are checked as invariants
(every request is either a line or counted in a summary) and as bounds
derived from the elapsed time, never as timings.
"""

from __future__ import annotations

import math
import time
from typing import Any

import aiohttp
import pytest

from gateway.lightning.lnd import LndClient
from gateway.observability import logsetup as logs
from gateway.observability.log_limits import AccessSampler, StormGuard
from gateway.regtest.network import Descriptor
from tests.gateway.harness import buy_with
from tests.logs.conftest import StartGateway
from tests.logs.support import FREE, PRICED, Secrets, exchange, leaks, read_log, status_of

STORM = StormGuard()
ACCESS = AccessSampler()
OUTCOME_OF_STATUS = {503: "lightning_unavailable", 429: "rate_limited", 402: "challenge"}


def access_lines(lines: list[dict[str, Any]], outcome: str) -> tuple[int, int]:
    """(request lines, requests counted in summaries) of the access log for `outcome`."""
    mine = [
        line
        for line in lines
        if line.get("logger") == "gateway.access" and line.get("outcome") == outcome
    ]
    written = sum(1 for line in mine if line["msg"] == "request")
    counted = sum(line["suppressed"] for line in mine if line["msg"] == "access log sampled")
    return written, counted


async def test_a_flood_of_malformed_requests_writes_a_burst_then_a_count(
    start_gateway: StartGateway, secret: Secrets
) -> None:
    gw = await start_gateway("info")
    raw = f"GET {PRICED} HTTP/1.1\r\nHost: gw\r\nAuthorization : {secret.credential}\r\n\r\n"
    started = time.monotonic()
    n = 300
    for _ in range(n):
        assert status_of(await exchange(gw.port, raw.encode())) == 400
    windows = 1 + math.floor((time.monotonic() - started) / STORM.budget.window)
    logs.unconfigure()  # as at shutdown: pending counts are written out

    text, lines = read_log(gw.log_path)
    # The edge (gateway.server.edge) answers unparsable requests and logs their type only.
    errors = [line for line in lines if line["logger"] == "gateway.edge"]
    written = [
        line for line in errors if line["msg"] == "rejected a request that could not be parsed"
    ]
    summaries = [line for line in errors if "suppressed" in line]
    assert len(written) + sum(s["suppressed"] for s in summaries) == n
    assert len(written) <= STORM.budget.burst * windows
    assert {line["error"] for line in written} == {"BadHttpMessage"}
    assert summaries
    assert summaries[-1]["msg"].startswith("suppressed ")
    assert summaries[-1]["similar_to"] == "rejected a request that could not be parsed"
    assert not leaks(text, secret.named())


async def test_an_unpaid_flood_is_sampled_and_every_free_request_keeps_its_line(
    start_gateway: StartGateway,
) -> None:
    # LND is unreachable: the first `burst` unpaid requests get 503, the rest 429
    # (plus one more 503 per minute, as the bucket refills).
    gw = await start_gateway("info", rate_per_minute=1, burst=20)
    statuses: dict[int, int] = {}
    free = 0
    started = time.monotonic()
    for i in range(600):
        status = status_of(
            await exchange(gw.port, f"GET {PRICED} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
        )
        assert status in OUTCOME_OF_STATUS
        statuses[status] = statuses.get(status, 0) + 1
        if i % 20 == 0:
            raw = f"GET {FREE}/n{i} HTTP/1.1\r\nHost: gw\r\n\r\n".encode()
            assert status_of(await exchange(gw.port, raw)) == 200
            free += 1
    seconds = time.monotonic() - started
    logs.unconfigure()

    _, lines = read_log(gw.log_path)
    free_lines = [line for line in lines if line.get("outcome") == "free"]
    assert sorted(line["path"] for line in free_lines) == sorted(
        f"{FREE}/n{i}" for i in range(0, 600, 20)
    )
    assert 20 <= statuses[503] <= 20 + math.ceil(seconds / 60)
    assert statuses[503] + statuses[429] == 600
    per_outcome_bound = ACCESS.budget.burst * (math.ceil(seconds / ACCESS.budget.window) + 1)
    for status, count in statuses.items():
        written, counted = access_lines(lines, OUTCOME_OF_STATUS[status])
        assert written + counted == count
        assert written <= per_outcome_bound
    # ~20 "invoice creation failed" warnings (one per 503) are one storm key
    warnings = [line for line in lines if line["msg"] == "invoice creation failed"]
    assert len(warnings) <= STORM.budget.burst
    assert len(lines) < free + 2 * per_outcome_bound + 40


@pytest.mark.regtest
async def test_paid_requests_keep_one_line_each_during_an_unpaid_flood(
    start_gateway: StartGateway, regtest: Descriptor, buyer_admin: LndClient
) -> None:
    lnd = {
        "host": regtest.seller.rpc,
        "tls_cert": regtest.seller.tls_cert,
        "macaroon": regtest.seller.invoice_macaroon,
    }
    gw = await start_gateway("info", lnd=lnd, rate_per_minute=60, burst=20)
    url = f"http://127.0.0.1:{gw.port}{PRICED}"
    async with aiohttp.ClientSession() as session:
        bought = await buy_with(buyer_admin, session, url)
    paid_raw = f"GET {PRICED} HTTP/1.1\r\nHost: gw\r\nAuthorization: {bought.authorization}\r\n\r\n"
    unpaid, paid = 0, 0
    for i in range(400):
        status = status_of(
            await exchange(gw.port, f"GET {PRICED} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
        )
        assert status in (402, 429)
        unpaid += 1
        if i % 10 == 0:
            assert status_of(await exchange(gw.port, paid_raw.encode())) == 200
            paid += 1
    logs.unconfigure()

    text, lines = read_log(gw.log_path)
    paid_lines = [line for line in lines if line.get("outcome") == "paid"]
    assert len(paid_lines) == paid
    assert all(line["status"] == 200 and len(line["token_id"]) == 64 for line in paid_lines)
    refused = [
        line
        for line in lines
        if line.get("logger") == "gateway.access" and line.get("outcome") != "paid"
    ]
    assert len(refused) < unpaid / 2  # sampled: far fewer lines than unpaid requests
    secrets_of_purchase = {"macaroon": bought.macaroon, "preimage": bought.preimage}
    assert not leaks(text, secrets_of_purchase)
