#!/usr/bin/env python3
"""What the embedded middleware adds to a request, in FastAPI (uvicorn) and aiohttp apps.

One app per framework, with and without `gateway.embed` in front of the same
two handlers, each served on 127.0.0.1 in this process. The route `/signal`
costs 10 sat (reusable token), bought once on the regtest network (the
buyer's LND pays the seller's); `/open` is in no route. For each app it times
N sequential keep-alive GETs from a raw-socket client:

- bare:      the app without the middleware (`/signal`);
- unpriced:  `/open` through the middleware (located, passed through);
- paid:      `/signal` with the credential (verified-credential cache hit).

The client shares the process, so absolute figures include it; the
differences are the middleware's. Every response's status is checked. Loops
are bounded in count. Figures depend on the machine.

Usage: .venv/bin/python bench/embed_bench.py [--requests 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import uvicorn  # noqa: E402
from aiohttp import web  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from gateway.embed import L402, L402Middleware, LndSettings, PricedRoute  # noqa: E402
from gateway.lightning.lnd import LndClient  # noqa: E402
from gateway.regtest.network import RegtestNetwork  # noqa: E402

ROUTES = [PricedRoute("signal", "^/signal$", price_sats=10)]
BODY = {"ok": True, "signal": "buy"}


def fastapi_app(seller: L402 | None) -> FastAPI:
    app = FastAPI()
    if seller is not None:
        app.add_middleware(L402Middleware, paywall=seller)

    @app.get("/signal")
    async def signal() -> dict[str, Any]:
        return BODY

    @app.get("/open")
    async def open_route() -> dict[str, Any]:
        return BODY

    return app


def aiohttp_app(seller: L402 | None) -> web.Application:
    async def handler(_request: web.Request) -> web.Response:
        return web.json_response(BODY)

    app = web.Application()
    if seller is not None:
        seller.setup_aiohttp(app)
    app.router.add_get("/signal", handler)
    app.router.add_get("/open", handler)
    return app


@contextlib.asynccontextmanager
async def serve(kind: str, seller: L402 | None) -> AsyncIterator[int]:
    if kind == "aiohttp":
        runner = web.AppRunner(aiohttp_app(seller), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            yield runner.addresses[0][1]
        finally:
            await runner.cleanup()
        return
    sock = socket.socket()
    # Accepted sockets inherit it; asyncio sets it only on sockets made with IPPROTO_TCP.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(fastapi_app(seller), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task
        sock.close()


async def timed_gets(port: int, path: str, headers: str, count: int, status: int) -> list[float]:
    """`count` sequential GETs on one keep-alive connection; seconds per request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n".encode()
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            samples.append(time.perf_counter() - started)
            got = int(head.split(b" ", 2)[1])
            if got != status:
                raise SystemExit(f"GET {path}: expected {status}, got {got}")
    finally:
        writer.close()
    return samples


async def buy(port: int, payer: LndClient) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /signal HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    head, body = raw.split(b"\r\n\r\n", 1)
    if int(head.split(b" ", 2)[1]) != 402:
        raise SystemExit("expected a 402 challenge")
    challenge = json.loads(body)
    payment = await payer.pay_invoice(
        challenge["invoice"], fee_limit_msat=10_000, timeout_seconds=30
    )
    return f"Authorization: L402 {challenge['macaroon']}:{payment.preimage.hex()}\r\n"


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "mean_us": statistics.fmean(samples) * 1e6,
        "p50_us": ordered[len(ordered) // 2] * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
    }


async def run(count: int) -> list[dict[str, Any]]:
    network = RegtestNetwork()
    print("starting the regtest network ...", file=sys.stderr)
    network.start()
    rows: list[dict[str, Any]] = []
    try:
        d = network.descriptor
        assert d is not None
        payer = LndClient.connect(
            d.buyer.rpc, tls_cert=Path(d.buyer.tls_cert), macaroon=Path(d.buyer.admin_macaroon)
        )
        with tempfile.TemporaryDirectory() as work:
            for kind in ("fastapi", "aiohttp"):
                seller = L402.from_routes(
                    ROUTES,
                    lnd=LndSettings(d.seller.rpc, d.seller.tls_cert, d.seller.invoice_macaroon),
                    store_url=f"sqlite://{work}/{kind}.db",
                )
                async with serve(kind, None) as bare, serve(kind, seller) as embedded:
                    auth = await buy(embedded, payer)
                    await timed_gets(embedded, "/signal", auth, 50, 200)  # warm-up
                    await timed_gets(bare, "/signal", "", 50, 200)
                    cases = [
                        ("bare", bare, "/signal", ""),
                        ("unpriced", embedded, "/open", ""),
                        ("paid", embedded, "/signal", auth),
                    ]
                    for case, port, path, headers in cases:
                        samples = await timed_gets(port, path, headers, count, 200)
                        rows.append(
                            {"app": kind, "case": case, "requests": count, **stats(samples)}
                        )
        await payer.close()
    finally:
        network.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=2000, help="per case (bounded loop)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    args = parser.parse_args()
    rows = asyncio.run(run(max(1, min(args.requests, 100_000))))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'app':8} {'case':9} {'mean µs':>9} {'p50 µs':>9} {'p99 µs':>9}")
    for row in rows:
        print(
            f"{row['app']:8} {row['case']:9} {row['mean_us']:9.0f} "
            f"{row['p50_us']:9.0f} {row['p99_us']:9.0f}"
        )


if __name__ == "__main__":
    main()
