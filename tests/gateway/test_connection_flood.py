"""Descriptor exhaustion: idle connections past `nofile` must not stop either listener.

Before: 3,000 idle connections against `nofile` 1024 stopped the public
listener and the admin /healthz for 200+ s and wrote 1.45 GB of error log
(asyncio's accept retry logs a traceback each time). Here `l402-gateway serve`
runs as a real process with `nofile` 1024; the test holds 1,500 idle
connections (more than the process can open), then checks that the admin
listener answers, the log stayed small, and once the idle connections are cut
off by the head deadline a new client is served again.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.regtest.processes import free_port

REPO = Path(__file__).resolve().parents[2]
NOFILE = 1024
IDLE = 1500
HEADER_TIMEOUT = 2.0


def _limit_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@pytest.fixture
async def upstream() -> AsyncIterator[int]:
    app = web.Application()

    async def free(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/free", free)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def _config(tmp_path: Path, upstream_port: int) -> tuple[Path, int, int]:
    public, admin = free_port(), free_port()
    (tmp_path / "tls.cert").write_text("unused\n")
    (tmp_path / "invoice.macaroon").write_text("unused\n")
    config = tmp_path / "routes.yaml"
    config.write_text(
        f"""\
listen:
  public: "127.0.0.1:{public}"
  admin: "127.0.0.1:{admin}"
  header_timeout_seconds: {HEADER_TIMEOUT}
  keepalive_timeout_seconds: {HEADER_TIMEOUT}
lnd: {{host: "127.0.0.1:{free_port()}", tls_cert: tls.cert, macaroon: invoice.macaroon}}
store: {{url: "sqlite:tokens.db", prune_after_days: 0}}
routes:
  - {{name: free, path: '^/free$', upstream: "http://127.0.0.1:{upstream_port}", price_sats: 0}}
"""
    )
    return config, public, admin


async def _get(url: str) -> int:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as r:
        await r.read()
        return r.status


async def _until(what: str, check: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if await check():  # type: ignore[operator]
                return
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)  # polling another process's sockets, with a deadline


async def test_idle_connections_past_nofile_do_not_stop_either_listener(
    tmp_path: Path, upstream: int
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < IDLE + 200:
        pytest.skip(f"this test process may open only {hard} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    config, public, admin = _config(tmp_path, upstream)
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)),
            *("--workers", "1"),
            cwd=REPO,
            stdout=out,
            stderr=out,
            preexec_fn=_limit_nofile,
        )
    held: list[socket.socket] = []
    try:
        await _until("the gateway", lambda: _served(f"http://127.0.0.1:{public}/free"), 30)
        for _ in range(IDLE):  # connect and send nothing (slowloris without the bytes)
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", public))
            held.append(sock)
        started = time.monotonic()
        assert await _get(f"http://127.0.0.1:{admin}/healthz") == 200
        admin_answered = time.monotonic() - started
        # The head deadline cuts the idle connections off; then new clients are served.
        await _until(
            "a new client to be served", lambda: _served(f"http://127.0.0.1:{public}/free"), 30
        )
        recovered = time.monotonic() - started
        assert proc.returncode is None, "the gateway died"
        size = log.stat().st_size
        print(
            f"{IDLE} idle connections against nofile {NOFILE}: admin answered in "
            f"{admin_answered:.2f} s, public served again after {recovered:.2f} s, "
            f"log {size} bytes"
        )
        assert size < 200_000, log.read_text()[-3000:]
    finally:
        for sock in held:
            sock.close()
        proc.terminate()
        async with asyncio.timeout(60):
            await proc.wait()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _served(url: str) -> bool:
    return await _get(url) == 200
