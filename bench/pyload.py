"""The Python load generator: a minimal HTTP/1.1 keep-alive client on asyncio streams.

Kept beside wrk (the default) for hosts without wrk and as a cross-check: it
is deliberately tiny (roughly 40-90 µs of CPU per request), closed loop like
wrk, and checks every response's status (and a required header).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from bench.phase import BenchFailure, Load, LoadSample, ms, percentile

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 30.0  # seconds; one request slower than this is a failure


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class Connection:
    """One keep-alive connection; requests on it are strictly sequential."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(HOST, self.port)
        return self._reader, self._writer

    async def request(self, raw: bytes) -> Reply:
        reader, writer = await self._open()
        try:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head[:-4].split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if b"content-length" in headers:
                body = await reader.readexactly(int(headers[b"content-length"]))
            elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                body = await _read_chunked(reader)
            else:
                body = await reader.read()
                headers[b"connection"] = b"close"
        except BaseException:
            await self.close()
            raise
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return Reply(status, headers, body)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append((await reader.readexactly(size + 2))[:-2])


def build_request(load: Load) -> bytes:
    lines = [f"GET {load.path} HTTP/1.1", f"Host: {HOST}:{load.port}", "Accept: application/json"]
    if load.authorization is not None:
        lines.append(f"Authorization: {load.authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def fetch_once(load: Load) -> Reply:
    """One request on a fresh connection (set-up and body checks)."""
    conn = Connection(load.port)
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            return await conn.request(build_request(load))
    finally:
        await conn.close()


def problem(load: Load, reply: Reply) -> str | None:
    if reply.status != load.expected:
        return f"status {reply.status} (expected {load.expected}): {reply.body[:200]!r}"
    if load.need_header is not None and load.need_header.encode() not in reply.headers:
        return f"status {reply.status} without a {load.need_header} header"
    return None


async def run_python(
    load: Load, concurrency: int, seconds: float, max_requests: int, label: str
) -> LoadSample:
    """Closed loop until `max_requests` were sent or `seconds` passed."""
    raw = build_request(load)
    latencies: list[float] = []
    failures: list[str] = []
    issued = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async def worker() -> None:
        nonlocal issued
        conn = Connection(load.port)
        try:
            while not failures and issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                start = time.perf_counter()
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT):
                        reply = await conn.request(raw)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    return
                latencies.append(time.perf_counter() - start)
                found = problem(load, reply)
                if found is not None:
                    failures.append(found)
                    return
        finally:
            await conn.close()

    # The outer bound covers a stuck connect as well as slow requests.
    async with asyncio.timeout(seconds + REQUEST_TIMEOUT + 10):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    if failures:
        raise BenchFailure(f"{label}: {len(failures)} failed request(s); first: {failures[0]}")
    if not latencies:
        raise BenchFailure(f"{label}: no request completed")
    latencies.sort()
    return LoadSample(
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=ms(percentile(latencies, 50)),
        p90_ms=ms(percentile(latencies, 90)),
        p99_ms=ms(percentile(latencies, 99)),
        max_ms=ms(latencies[-1]),
        mean_ms=ms(sum(latencies) / len(latencies)),
    )
