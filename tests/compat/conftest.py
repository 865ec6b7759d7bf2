"""Fixtures: the real seller stack (demo upstream + `l402-gateway serve`) on the regtest seller,
and LND's REST `/v2/router/send` in front of the regtest buyer for clients that only speak REST.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.regtest.network import Descriptor
from gateway.rehearsal.stack import SellerStack
from tests.compat.lnd_rest import LndRestRouter


@pytest.fixture
def seller(regtest: Descriptor, tmp_path: Path) -> Iterator[SellerStack]:
    stack = SellerStack.start(regtest, tmp_path / "seller")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def buyer_rest(regtest: Descriptor) -> AsyncIterator[LndRestRouter]:
    async with LndRestRouter(regtest.buyer.rpc, regtest.buyer.tls_cert) as router:
        yield router


@pytest.fixture
def buyer_macaroon_hex(regtest: Descriptor) -> str:
    return Path(regtest.buyer.admin_macaroon).read_bytes().hex()
