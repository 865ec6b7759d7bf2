"""Differential: the embedded paywall prices exactly what the app would serve from a priced handler.

Each app (tests/embed/differential_apps.py) runs twice on 127.0.0.1, bare and
with the L402 middleware: FastAPI under uvicorn with and without
`--root-path /api` (a `Mount("/v1")` sub-app with its own seller inside), a
plain Starlette app, and an aiohttp app with an `add_subapp("/v1")` sub-app
with its own seller. Every request below is sent, byte for byte, to both. For
each request the bare app answered from a priced handler, the protected app
must have answered itself without running any handler: 402, or 400 for a
spelling it refuses, or 204 for an OPTIONS it answers. And no unpaid request
may ever run a priced handler of the protected app.

Before this test existed, uvicorn's `--root-path` made every priced route
free, a `Mount` sub-app's seller priced the full path (free again), a preflight
and HEAD on a GET route went to the app unpaid, and OPTIONS reached handlers
that accept it. Real servers, stores and middlewares; only LND's invoice role
is the named fake `MemoryInvoiceSource` (test_embed_regtest.py: real LND).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from gateway.embed import L402, PricedRoute
from gateway.lightning.backend import Backend
from gateway.store import open_store
from tests.embed.conftest import OPTIONS, dummy_lnd
from tests.embed.differential_apps import (
    OUTER_ROUTES,
    PRICED,
    SUB_ROUTES,
    Calls,
    aiohttp_app,
    fastapi_app,
    starlette_app,
)
from tests.embed.shop import serve_uvicorn
from tests.support.invoices import MemoryInvoiceSource

TARGETS = ("/report", "/star", "/items/7", "/v1/report", "/free")
ORIGIN = ("Origin", "https://app.example")
# (label, method, extra headers)
METHODS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("GET", "GET", ()),
    ("HEAD", "HEAD", ()),
    ("POST", "POST", (("Content-Length", "0"),)),
    ("OPTIONS", "OPTIONS", ()),
    ("preflight GET", "OPTIONS", (ORIGIN, ("Access-Control-Request-Method", "GET"))),
    ("preflight PUT", "OPTIONS", (ORIGIN, ("Access-Control-Request-Method", "PUT"))),
)
MIDDLEWARE_ANSWERS = frozenset({402, 400, 204})


def _encode_last(target: str) -> str:
    return target[:-1] + f"%{ord(target[-1]):02X}"


def spellings(target: str, root_path: str) -> Iterator[str]:
    """Ways to write `target` that some router may resolve to it (or to something else)."""
    roots = {root_path, "/api"} - {""}
    yield target
    yield target + "/"
    yield "/" + target  # "//report"
    yield target.replace("/", "//")
    yield target.upper()
    yield target.capitalize()
    yield _encode_last(target)
    yield "/free/.." + target
    yield "/." + target
    yield "/free/%2e%2e" + target
    yield "/free/%252e%252e" + target
    yield "/free/..;" + target
    yield target + ";x=1"
    yield target.replace("/", "%2F").replace("%2F", "/", 1)
    for root in roots:
        yield root + target
        yield root + target + "/"
        yield root + root + target
        yield root.upper() + target


@dataclass
class Verdict:
    """What one differential run saw (the figures docs/security.md quotes)."""

    requests: int = 0
    priced_in_bare: Counter[str] = field(default_factory=Counter)  # by method label
    protected_answers: Counter[int] = field(default_factory=Counter)  # for those, by status
    failures: list[str] = field(default_factory=list)


async def send(port: int, method: str, target: str, headers: tuple[tuple[str, str], ...]) -> int:
    """One request as raw bytes on its own connection (no client normalises the target)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {target} HTTP/1.1", "Host: shop", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        async with asyncio.timeout(15):
            data = await reader.read(-1)
    finally:
        writer.close()
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def _ran(before: Counter[str], after: Counter[str]) -> set[str]:
    return {name for name in after if after[name] > before[name]}


async def differential(
    bare: tuple[int, Calls], protected: tuple[int, Calls], root_path: str
) -> Verdict:
    verdict = Verdict()
    for target in TARGETS:
        for spelled in dict.fromkeys(spellings(target, root_path)):
            for label, method, headers in METHODS:
                verdict.requests += 1
                seen = bare[1].snapshot()
                bare_status = await send(bare[0], method, spelled, headers)
                bare_ran = _ran(seen, bare[1].seen)
                seen = protected[1].snapshot()
                status = await send(protected[0], method, spelled, headers)
                ran = _ran(seen, protected[1].seen)
                failed = bool(ran & PRICED)  # a priced handler ran unpaid
                if bare_ran & PRICED:
                    verdict.priced_in_bare[label] += 1
                    verdict.protected_answers[status] += 1
                    failed = failed or bool(ran) or status not in MIDDLEWARE_ANSWERS
                if failed:
                    verdict.failures.append(
                        f"{label} {spelled}: bare {bare_status} {sorted(bare_ran)};"
                        f" protected {status} ran {sorted(ran)}"
                    )
    return verdict


def _seller(routes: list[PricedRoute], tmp_path: Path, store: Any) -> L402:
    return L402.from_routes(
        routes,
        lnd=dummy_lnd(tmp_path),
        store_url="sqlite::memory:",
        options={**OPTIONS, "store": {"prune_after_days": 0}},
        lightning=cast(Backend, MemoryInvoiceSource()),
        store=store,
        follow_settlements=False,
    )


@asynccontextmanager
async def sellers(tmp_path: Path) -> AsyncIterator[tuple[L402, L402]]:
    """The outer app's seller and the sub-app's, on one in-memory store."""
    store = await open_store("sqlite::memory:")
    try:
        yield _seller(OUTER_ROUTES, tmp_path, store), _seller(SUB_ROUTES, tmp_path, store)
    finally:
        await store.close()


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def _check(verdict: Verdict, must_cover: set[str]) -> None:
    assert not verdict.failures, "\n".join(verdict.failures[:40])
    # Not vacuous: the bare app served priced handlers for these kinds of request.
    assert must_cover <= set(verdict.priced_in_bare), verdict.priced_in_bare


@pytest.mark.parametrize("root_path", ["", "/api"])
async def test_fastapi_under_uvicorn_with_a_mount(tmp_path: Path, root_path: str) -> None:
    async with AsyncExitStack() as stack:
        outer, sub = await stack.enter_async_context(sellers(tmp_path))
        await sub.start()  # a Mount passes no lifespan events to its sub-app
        stack.push_async_callback(sub.stop)
        bare_calls, calls = Calls(), Calls()
        bare = await stack.enter_async_context(
            serve_uvicorn(fastapi_app(bare_calls, None, None), root_path=root_path)
        )
        protected = await stack.enter_async_context(
            serve_uvicorn(fastapi_app(calls, outer, sub), root_path=root_path)
        )
        verdict = await differential(
            (_port(bare.base), bare_calls), (_port(protected.base), calls), root_path
        )
    _check(verdict, {"GET", "POST", "OPTIONS", "preflight GET", "preflight PUT"})
    assert verdict.priced_in_bare["GET"] >= 8


async def test_starlette_app(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        outer, _sub = await stack.enter_async_context(sellers(tmp_path))
        bare_calls, calls = Calls(), Calls()
        bare = await stack.enter_async_context(serve_uvicorn(starlette_app(bare_calls, None)))
        protected = await stack.enter_async_context(serve_uvicorn(starlette_app(calls, outer)))
        verdict = await differential(
            (_port(bare.base), bare_calls), (_port(protected.base), calls), ""
        )
    _check(verdict, {"GET", "HEAD", "POST", "OPTIONS", "preflight GET"})


async def test_aiohttp_app_with_a_sub_app(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        outer, sub = await stack.enter_async_context(sellers(tmp_path))
        bare_calls, calls = Calls(), Calls()
        bare = await stack.enter_async_context(
            serve_aiohttp_calls(aiohttp_app(bare_calls, None, None))
        )
        protected = await stack.enter_async_context(
            serve_aiohttp_calls(aiohttp_app(calls, outer, sub))
        )
        verdict = await differential((bare, bare_calls), (protected, calls), "")
    _check(verdict, {"GET", "HEAD", "POST", "OPTIONS", "preflight GET", "preflight PUT"})
    assert verdict.priced_in_bare["GET"] >= 8


@asynccontextmanager
async def serve_aiohttp_calls(app: Any) -> AsyncIterator[int]:
    from aiohttp import web

    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()
