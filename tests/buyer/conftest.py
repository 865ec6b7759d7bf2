"""Fixtures for buyer tests: a real seller and wallet executor on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from .fakes import Executor, RouteSpec, Seller

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def routes() -> dict[str, RouteSpec]:
    """The EP212 shapes: pay-per-request stand-in for sats4ai, route A, route B."""
    return {
        "/api/l402/text-generation": RouteSpec(42_000, mode="per_request"),
        "/ep212/premium-signal": RouteSpec(10_000),
        "/ep212/expensive-signal": RouteSpec(250_000),
    }


@pytest.fixture
async def seller_server(
    aiohttp_server: ServerFactory, routes: dict[str, RouteSpec]
) -> tuple[Seller, TestServer]:
    seller = Seller(routes)
    server = await aiohttp_server(seller.app(), host="127.0.0.1")
    return seller, server


@pytest.fixture
async def executor_server(
    aiohttp_server: ServerFactory, seller_server: tuple[Seller, TestServer]
) -> tuple[Executor, TestServer]:
    executor = Executor(seller_server[0])
    server = await aiohttp_server(executor.app(), host="127.0.0.1")
    return executor, server
