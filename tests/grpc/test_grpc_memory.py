"""100 MiB each way through the engine with bounded memory: the gateway runs in its own process
and its peak RSS (VmHWM) is measured around the transfers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tests.grpc.conftest import Upstream
from tests.grpc.rig import MESSAGE, WAIT, method, pattern_digest, pattern_messages

COUNT = 100  # messages of 1 MiB: 100 MiB
PACE = 0.01  # the receiving side is slower than the sending one: the gateway must not buffer
GROWTH_LIMIT = 32 * 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing")


def reset_peak(pid: int) -> None:
    """Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@pytest.fixture
async def gateway_process(upstream: Upstream) -> AsyncIterator[tuple[int, int]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("gateway_process.py")),
        str(upstream.port),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(WAIT):
            line = await process.stdout.readline()
        assert line.startswith(b"PORT "), line
        yield process.pid, int(line.split()[1])
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            async with asyncio.timeout(WAIT):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_100_mib_each_way_with_bounded_gateway_memory(
    gateway_process: tuple[int, int],
) -> None:
    pid, port = gateway_process
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        upload = channel.stream_unary(method("Upload"))
        download = channel.unary_stream(method("Download"))
        # warm up: imports, code paths and connections exist before the baseline
        await upload(pattern_messages(4), timeout=WAIT)
        [_ async for _ in download(b"4", timeout=WAIT)]
        baseline = status_kib(pid, "VmRSS")
        reset_peak(pid)

        pace = (("x-pace", str(PACE)),)
        reply = await upload(pattern_messages(COUNT), metadata=pace, timeout=120)
        assert reply == f"{COUNT * MESSAGE}:{pattern_digest(COUNT)}".encode()

        digest, size = hashlib.sha256(), 0
        async for message in download(str(COUNT).encode(), timeout=120):
            digest.update(message)
            size += len(message)
            await asyncio.sleep(PACE)  # a slow reader (pacing, not synchronisation)
        assert (size, digest.hexdigest()) == (COUNT * MESSAGE, pattern_digest(COUNT))

    growth = (status_kib(pid, "VmHWM") - baseline) * 1024
    print(f"gateway RSS {baseline / 1024:.1f} MiB, peak growth {growth / 2**20:.1f} MiB")
    assert growth < GROWTH_LIMIT
