"""`l402-gateway serve` as an operator runs it: a process on the regtest seller node.

The gateway and the demo upstream are subprocesses of the test (`python -m
gateway`, from the checkout), with the admin API on (a 0600 secret in
tmp_path), a SQLite store in tmp_path and one priced route. The operator
tests (tests/ops) and the MCP tests (tests/agent) drive it from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from tests.ops.support import REPO, write_secret

PRICE_SATS = 21
ROUTE_PATH = "/ep212/premium-signal"
# The route's upstream header takes its value from the environment of `serve` only:
# commands that do not proxy must run without it.
UPSTREAM_KEY_VAR = "L402_OPS_TEST_UPSTREAM_KEY"


@dataclass
class Served:
    config: Path
    token_file: Path
    public: str
    admin: str
    gateway: asyncio.subprocess.Process
    log: Path


async def wait_ready(
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


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(40):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def served_gateway(regtest: Descriptor, tmp_path: Path) -> AsyncIterator[Served]:
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
        f"  - {{name: signal, path: '^{ROUTE_PATH}$',"
        f" upstream: 'http://127.0.0.1:{upstream_port}', price_sats: {PRICE_SATS},"
        f"    upstream_headers: {{X-Upstream-Key: '${{{UPSTREAM_KEY_VAR}}}'}}}}\n"
    )
    python = [sys.executable, "-m", "gateway"]
    log_path = tmp_path / "gateway.log"
    log = log_path.open("wb")
    upstream = await asyncio.create_subprocess_exec(
        *python, "signal-upstream", "--port", str(upstream_port), cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    gateway = await asyncio.create_subprocess_exec(
        *python, "serve", "--config", str(config), cwd=REPO, stdout=log, stderr=log,
        env={**os.environ, UPSTREAM_KEY_VAR: "k"},
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, f"http://127.0.0.1:{upstream_port}/healthz", upstream)
            await wait_ready(session, f"http://127.0.0.1:{admin}/readyz", gateway)
        yield Served(
            config,
            token_file,
            f"http://127.0.0.1:{public}",
            f"http://127.0.0.1:{admin}",
            gateway,
            log_path,
        )
    finally:
        await stop(gateway)
        await stop(upstream)
        log.close()
