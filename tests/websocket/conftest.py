"""Fixtures for the WebSocket suite: a fresh gateway and upstreams per test."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.websocket.harness import AccessLog, Rig, running_rig


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running_rig(tmp_path) as running:
        yield running


@pytest.fixture
def access() -> Iterator[AccessLog]:
    handler = AccessLog()
    logger = logging.getLogger("gateway.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
