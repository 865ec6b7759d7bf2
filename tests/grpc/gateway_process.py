"""The engine alone in a process, so a test can measure its memory (RSS) apart from grpcio's.

Usage: python tests/grpc/gateway_process.py UPSTREAM_PORT
Forwards every stream to 127.0.0.1:UPSTREAM_PORT (h2c), prints `PORT <n>` once
listening, and exits when stdin closes.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from gateway.h2engine import (
    FailReason,
    Forward,
    H2Proxy,
    H2Site,
    H2Target,
    StreamHead,
    StreamOutcome,
)


class NullTicket:
    async def answered(self, status: int, grpc_status: int | None) -> None:
        return None

    async def failed(self, reason: FailReason) -> None:
        return None

    def finished(self, outcome: StreamOutcome) -> None:
        return None


class ForwardAll:
    def __init__(self, port: int) -> None:
        self.target = H2Target("127.0.0.1", port, None, f"127.0.0.1:{port}", 5.0)

    async def decide(self, head: StreamHead) -> Forward:
        return Forward(self.target, head.path, head.headers, NullTicket())


async def main(upstream_port: int) -> None:
    runner = web.AppRunner(web.Application(), access_log=None)
    await runner.setup()
    proxy = H2Proxy(ForwardAll(upstream_port))
    site = H2Site(runner, proxy, "127.0.0.1", 0)
    await site.start()
    print(f"PORT {site.port}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    await runner.cleanup()
    await proxy.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
