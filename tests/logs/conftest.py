"""Fixtures: a real gateway logging exactly as `l402-gateway serve --log-file` does."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.config import load_config
from gateway.observability import logsetup as logs
from gateway.server.serve import GatewayServer
from tests.logs.support import Secrets, make_upstream, write_gateway_config


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Every test leaves the process's logging as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access = logging.getLogger("aiohttp.access")
    disabled = access.disabled
    yield
    logs.unconfigure()
    root.handlers[:] = handlers
    root.setLevel(level)
    access.disabled = disabled
    logging.captureWarnings(False)


@pytest.fixture
def secret() -> Secrets:
    return Secrets()


@pytest.fixture
async def upstream_url() -> AsyncIterator[str]:
    runner = web.AppRunner(make_upstream(), shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@dataclass
class LoggedGateway:
    server: GatewayServer
    log_path: Path

    @property
    def port(self) -> int:
        return self.server.public_port


StartGateway = Callable[..., Awaitable[LoggedGateway]]


@pytest.fixture
async def start_gateway(tmp_path: Path, upstream_url: str) -> AsyncIterator[StartGateway]:
    """`await start_gateway(level="info", **settings)`: logging configured as `serve` does."""
    running: list[GatewayServer] = []

    async def start(level: str = "info", **settings: Any) -> LoggedGateway:
        config_path = write_gateway_config(tmp_path, upstream_url, **settings)
        log_path = tmp_path / "gateway.log"
        logs.configure(level, log_file=log_path)  # what cmd_serve does with --log-file
        server = GatewayServer(load_config(config_path))
        await server.start()
        running.append(server)
        return LoggedGateway(server, log_path)

    yield start
    for server in reversed(running):
        await server.stop()
