"""The operator path end to end on real LND: `l402-gateway serve` as a process, a token
bought and paid on regtest, then found, reported and revoked with the CLI through the
running gateway's admin API, and read from the store once the gateway is gone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from tests.ops.support import REPO, bearer, cli, write_secret

pytestmark = pytest.mark.regtest
PRICE_SATS = 21


@dataclass
class Served:
    config: Path
    public: str
    admin: str
    gateway: asyncio.subprocess.Process


async def _wait_ready(
    session: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.returncode is None, "the process exited during start-up"
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as r:
                if r.status == 200:
                    return
        await asyncio.sleep(0.2)  # polling a process's start-up, bounded by the deadline
    raise TimeoutError(f"{url} not ready within 60 s")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(40):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def served(regtest: Descriptor, tmp_path: Path) -> AsyncIterator[Served]:
    upstream_port, public, admin = free_port(), free_port(), free_port()
    token_file = write_secret(tmp_path / "admin.token")
    config = tmp_path / "routes.yaml"
    config.write_text(
        f"listen: {{public: '127.0.0.1:{public}', admin: '127.0.0.1:{admin}'}}\n"
        f"lnd: {{host: '{regtest.seller.rpc}', tls_cert: '{regtest.seller.tls_cert}',"
        f" macaroon: '{regtest.seller.invoice_macaroon}'}}\n"
        f"store: {{url: 'sqlite:///{tmp_path}/tokens.db'}}\n"
        f"admin: {{token_file: '{token_file}'}}\n"
        "routes:\n"
        f"  - {{name: signal, path: '^/ep212/premium-signal$',"
        f" upstream: 'http://127.0.0.1:{upstream_port}', price_sats: {PRICE_SATS},"
        "    upstream_headers: {X-Upstream-Key: '${L402_OPS_TEST_UPSTREAM_KEY}'}}\n"
    )
    env_run = {"L402_OPS_TEST_UPSTREAM_KEY": "k"}
    python = [sys.executable, "-m", "gateway"]
    log = (tmp_path / "gateway.log").open("wb")
    upstream = await asyncio.create_subprocess_exec(
        *python, "signal-upstream", "--port", str(upstream_port), cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    gateway = await asyncio.create_subprocess_exec(
        *python, "serve", "--config", str(config), cwd=REPO, stdout=log, stderr=log,
        env={**os.environ, **env_run},
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_ready(session, f"http://127.0.0.1:{upstream_port}/healthz", upstream)
            await _wait_ready(session, f"http://127.0.0.1:{admin}/readyz", gateway)
        yield Served(config, f"http://127.0.0.1:{public}", f"http://127.0.0.1:{admin}", gateway)
    finally:
        await _stop(gateway)
        await _stop(upstream)
        log.close()


async def test_buy_find_report_revoke_with_the_cli(served: Served, buyer_admin: LndClient) -> None:
    url = served.public + "/ep212/premium-signal"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as r:
            assert r.status == 402
            challenge = await r.json()
        payment = await buyer_admin.pay_invoice(
            challenge["invoice"], fee_limit_msat=10_000, timeout_seconds=30
        )
        credential = f"L402 {challenge['macaroon']}:{payment.preimage.hex()}"
        async with session.get(url, headers={"Authorization": credential}) as r:
            assert r.status == 200

        # the settlement follower books the payment: the token shows as paid
        deadline = time.monotonic() + 30
        while True:
            listed = await cli("tokens", "list", "--config", str(served.config), "--json")
            assert listed.code == 0, listed.err
            tokens = json.loads(listed.out)["tokens"]
            assert [t["payment_hash"] for t in tokens] == [challenge["payment_hash"]]
            if tokens[0]["state"] == "paid" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        token = tokens[0]
        assert (token["state"], token["amt_paid_msat"]) == ("paid", PRICE_SATS * 1000)

        report = await cli("report", "--config", str(served.config), "--json", "--days", "1")
        assert report.code == 0, report.err
        rows = [row for row in json.loads(report.out) if row["route"] == "signal"]
        assert sum(row["revenue_msat"] for row in rows) == PRICE_SATS * 1000

        # the upstream's key is not in the CLI's environment: it does not need it
        revoked = await cli("revoke", "-", "--config", str(served.config), stdin=credential)
        assert revoked.code == 0, revoked.err
        assert "revoked via the gateway's admin API" in revoked.out
        assert payment.preimage.hex() not in revoked.out + revoked.err
        async with session.get(url, headers={"Authorization": credential}) as r:
            assert r.status == 402  # at once: the gateway dropped its cached credential
        async with session.get(served.admin + "/admin/routes", headers=bearer()) as r:
            routes = (await r.json())["routes"]
            assert [(x["name"], x["price_msat"]) for x in routes] == [("signal", 21_000)]

    await _stop(served.gateway)
    shown = await cli("tokens", "show", token["token_id"], "--config", str(served.config))
    assert shown.code == 0, shown.err  # no gateway: straight from the store
    assert "state         revoked" in shown.out
