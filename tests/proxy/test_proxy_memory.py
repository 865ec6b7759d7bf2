"""64 MiB each way through the proxy with bounded memory (tracemalloc peak)."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest

from tests.proxy.servers import RigFactory
from tests.support.bodies import pattern_sha256, pattern_stream

SIZE = 64 * 1024 * 1024
PEAK_LIMIT = 8 * 1024 * 1024


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
async def test_large_request_body_streams_upstream(
    rig: RigFactory, traced: None, declared: bool
) -> None:
    r = await rig(max_body_bytes=SIZE, timeout_seconds=60)
    expected = pattern_sha256(SIZE)
    headers = {"Content-Length": str(SIZE)} if declared else {}
    tracemalloc.reset_peak()
    async with r.gateway.post("/big-upload", data=pattern_stream(SIZE), headers=headers) as resp:
        assert resp.status == 200
        seen = await resp.json()
    _, peak = tracemalloc.get_traced_memory()
    print(f"upload peak traced memory: {peak / 1024 / 1024:.2f} MiB")
    assert seen == {"size": SIZE, "sha256": expected}
    [upstream_request] = r.upstream_state.requests
    sent = dict(upstream_request["headers"])
    assert sent.get("Content-Length") == (str(SIZE) if declared else None)
    assert peak < PEAK_LIMIT


async def test_large_response_body_streams_to_client(rig: RigFactory, traced: None) -> None:
    r = await rig(timeout_seconds=60)
    expected = pattern_sha256(SIZE)
    tracemalloc.reset_peak()
    digest = hashlib.sha256()
    size = 0
    async with r.gateway.get(f"/big-download?size={SIZE}") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(SIZE)
        async for chunk in resp.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
    _, peak = tracemalloc.get_traced_memory()
    print(f"download peak traced memory: {peak / 1024 / 1024:.2f} MiB")
    assert (size, digest.hexdigest()) == (SIZE, expected)
    assert peak < PEAK_LIMIT
