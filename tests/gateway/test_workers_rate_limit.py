"""`l402-gateway serve --workers 2`: one challenge allowance per client per gateway, on
SQLite and on PostgreSQL, minting on the real regtest seller.

Every request opens its own connection, so the kernel spreads them over both
workers' SO_REUSEPORT sockets. With per-process buckets (SQLite before this
test) each worker gave the client the full burst of 20: the 21st challenge was
minted. Now the 21st and every later one is refused (429) while the workers
together have minted exactly 20 invoices.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from gateway.regtest.network import Descriptor
from gateway.regtest.processes import ManagedProcess, free_port, wait_until
from tests.gateway.harness import metric

pytestmark = pytest.mark.regtest

BURST = 20  # the default burst
EXTRA = 10


def _ready(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (loopback)
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture
def gateway(regtest: Descriptor, tmp_path: Path, store_url: str) -> Iterator[tuple[str, str]]:
    public, admin = free_port(), free_port()
    document = {
        "listen": {"public": f"127.0.0.1:{public}", "admin": f"127.0.0.1:{admin}"},
        "lnd": {
            "host": regtest.seller.rpc,
            "tls_cert": str(regtest.seller.tls_cert),
            "macaroon": str(regtest.seller.invoice_macaroon),
        },
        "store": {"url": store_url},
        # The default burst; a refill of one a minute keeps the count exact.
        "challenge_rate_limit": {"per_minute": 1},
        "routes": [
            {"name": "p", "path": "^/p$", "upstream": f"http://127.0.0.1:{free_port()}",
             "price_sats": 1},
        ],
    }  # fmt: skip
    config = tmp_path / "routes.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
    proc = ManagedProcess(
        "gateway", [*argv, "--workers", "2"], tmp_path / "gateway.log", detached=False
    )
    try:

        def ready() -> bool:
            if not proc.alive():
                raise RuntimeError(f"the gateway exited:\n{proc.log_tail()}")
            return _ready(f"http://127.0.0.1:{admin}/readyz")

        wait_until("the 2-worker gateway", ready, 60)
        yield f"http://127.0.0.1:{public}", f"http://127.0.0.1:{admin}"
    finally:
        proc.stop()


async def test_the_21st_challenge_is_refused_across_two_workers(
    gateway: tuple[str, str],
) -> None:
    public, admin = gateway
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection, a new worker draw
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        statuses = []
        for _ in range(BURST + EXTRA):
            async with session.get(public + "/p") as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert int(r.headers["Retry-After"]) >= 1
        assert statuses == [402] * BURST + [429] * EXTRA, statuses
        async with session.get(admin + "/metrics") as r:
            text = await r.text()
    # Summed over both workers by the supervisor: 20 minted, 10 refused.
    assert metric(text, "l402_challenges_issued_total", route="p") == BURST
    assert metric(text, "l402_challenges_rate_limited_total", route="p") == EXTRA
    assert metric(text, "l402_lnd_rpc_latency_seconds_count", method="AddInvoice") == BURST
