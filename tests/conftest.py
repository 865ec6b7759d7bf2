"""Session-wide fixtures: the real regtest Lightning network and LND clients on it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor, RegtestNetwork
from gateway.regtest.processes import pid_alive
from tests.support.bodies import traced  # noqa: F401 (a fixture, shared by all suites)
from tests.support.postgres import PostgresServer, find_bindir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL for the session; fails (not skips) in CI when missing."""
    if find_bindir() is None:
        message = (
            "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) are missing: "
            "run scripts/ensure-system-deps.sh"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """`store.url` of an empty store of each kind (a fresh PostgreSQL database per test)."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'tokens.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture(scope="session")
def regtest_network() -> Iterator[RegtestNetwork]:
    """btcd + seller/buyer LND with funded channels; built from source on first use.

    Never skipped: a missing binary is built, and a failed build fails the tests.
    """
    network = RegtestNetwork()
    network.start()
    try:
        yield network
    finally:
        pids = [p.pid for p in network.procs]
        network.stop()
        leftover = [pid for pid in pids if pid_alive(pid)]
        assert not leftover, f"regtest processes still running after stop: {leftover}"
        assert not Path(network.dir).exists(), "regtest data directory was left behind"


@pytest.fixture(scope="session")
def regtest(regtest_network: RegtestNetwork) -> Descriptor:
    assert regtest_network.descriptor is not None
    return regtest_network.descriptor


def _client(node_rpc: str, cert: str, macaroon: str | None, timeout: float = 15.0) -> LndClient:
    return LndClient.connect(
        node_rpc,
        tls_cert=Path(cert),
        macaroon=Path(macaroon) if macaroon else None,
        timeout=timeout,
    )


@pytest.fixture
async def seller_invoices(regtest: Descriptor) -> AsyncIterator[LndClient]:
    """The seller node with only invoice.macaroon, as the gateway runs in production."""
    client = _client(regtest.seller.rpc, regtest.seller.tls_cert, regtest.seller.invoice_macaroon)
    yield client
    await client.close()


@pytest.fixture
async def seller_readonly(regtest: Descriptor) -> AsyncIterator[LndClient]:
    client = _client(regtest.seller.rpc, regtest.seller.tls_cert, regtest.seller.readonly_macaroon)
    yield client
    await client.close()


@pytest.fixture
async def buyer_admin(regtest: Descriptor) -> AsyncIterator[LndClient]:
    """The paying node, with admin.macaroon (offchain:write)."""
    client = _client(regtest.buyer.rpc, regtest.buyer.tls_cert, regtest.buyer.admin_macaroon)
    yield client
    await client.close()
