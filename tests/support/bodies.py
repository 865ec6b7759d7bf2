"""Large bodies generated on the fly (never held in memory) and a tracemalloc fixture.

Shared by the proxy and gateway suites' bounded-memory tests.
"""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import pytest

CHUNK = 64 * 1024


def pattern_chunk(index: int) -> bytes:
    """64 KiB of deterministic, index-dependent bytes (generated, never stored)."""
    return hashlib.sha256(index.to_bytes(8, "big")).digest() * (CHUNK // 32)


def _chunks(total: int) -> Iterator[bytes]:
    sent = index = 0
    while sent < total:
        chunk = pattern_chunk(index)[: total - sent]
        sent += len(chunk)
        index += 1
        yield chunk


async def pattern_stream(total: int) -> AsyncIterator[bytes]:
    for chunk in _chunks(total):
        yield chunk


def pattern_sha256(total: int) -> str:
    digest = hashlib.sha256()
    for chunk in _chunks(total):
        digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def traced() -> Iterator[None]:
    """tracemalloc on for the test, so it can assert a peak."""
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
