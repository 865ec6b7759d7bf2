"""Fixtures: the real Aperture on the regtest network, our demo upstream, our buyer;
and, for the importer, Aperture-shaped databases and our store, each on real
SQLite and real PostgreSQL.

`aperture_binary` skips (or fails in CI / with L402_REQUIRE_APERTURE=1) when
the Aperture source is absent; `start_aperture` starts instances that are
stopped by PID and removed at the end of the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from aiohttp import web

from gateway.buyer import (
    CredentialCache,
    FetchResult,
    L402Client,
    LndPayer,
    SpendPolicy,
    decode_invoice,
    parse_challenge,
)
from gateway.cli import main
from gateway.demo.upstream import make_signal_app
from gateway.lightning.lnd import LndClient
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port, pid_alive
from tests.aperture.admin import AdminAperture
from tests.aperture.schema import ApertureDb
from tests.support.aperture import (
    ApertureProcess,
    ApertureService,
    PostgresBackend,
    require_aperture,
)
from tests.support.postgres import PostgresServer

PREMIUM_PATH = "/ep212/premium-signal"
EXPENSIVE_PATH = "/ep212/expensive-signal"


KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _database_url(request: pytest.FixtureRequest, kind: str, path: Path) -> Iterator[str]:
    """A fresh SQLite path or PostgreSQL database URL (dropped at the end)."""
    if kind == "sqlite":
        yield str(path)
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture(params=KINDS)
def aperture_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApertureDb]:
    """An empty database with Aperture v0.5.0's tables, SQLite or PostgreSQL."""
    for target in _database_url(request, request.param, tmp_path / "aperture.db"):
        if request.param == "sqlite":
            yield ApertureDb.sqlite(Path(target))
        else:
            yield ApertureDb.postgres(target)


@pytest.fixture(params=KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """`store.url` of an empty store of ours, SQLite or PostgreSQL."""
    for target in _database_url(request, request.param, tmp_path / "tokens.db"):
        yield f"sqlite:///{target}" if request.param == "sqlite" else target


@pytest.fixture
def routes_file(tmp_path: Path, store_url: str) -> Path:
    """Our routes.yaml on `store_url`, selling routes named `premium` and `expensive`."""
    path = tmp_path / "routes.yaml"
    document = {
        "lnd": {"tls_cert": "tls.cert", "macaroon": "invoice.macaroon"},
        "store": {"url": store_url},
        "routes": [
            {"name": name, "path": f"^/{name}$", "upstream": "http://127.0.0.1:1", "price_sats": 10}
            for name in ("premium", "expensive")
        ],
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="session")
def aperture_binary() -> Path:
    return require_aperture()


@pytest.fixture
async def signal_upstream() -> AsyncIterator[str]:
    """Our EP212 demo upstream on a free loopback port; yields host:port."""
    runner = web.AppRunner(make_signal_app(), shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield f"127.0.0.1:{port}"
    await runner.cleanup()


StartAperture = Callable[..., Awaitable[ApertureProcess]]
Buy = Callable[[str], Awaitable["Purchase"]]


@pytest.fixture
def aperture_services(signal_upstream: str) -> list[ApertureService]:
    """premium: 10 sat, 1 h tokens, capabilities; zero: no price (Aperture charges 1 sat)."""
    return [
        ApertureService(
            "premium",
            signal_upstream,
            f"^{PREMIUM_PATH}$",
            10,
            timeout=3600,
            capabilities="read,write",
        ),
        ApertureService("zero", signal_upstream, f"^{EXPENSIVE_PATH}$", 0, timeout=60),
    ]


@pytest.fixture
async def start_aperture(
    aperture_binary: Path, regtest: Descriptor
) -> AsyncIterator[StartAperture]:
    """`await start_aperture(services, postgres=None, admin=False)`: a running Aperture on
    the seller (`admin=True`: an AdminAperture)."""
    started: list[ApertureProcess] = []

    async def start(
        services: list[ApertureService],
        postgres: PostgresBackend | None = None,
        *,
        admin: bool = False,
    ) -> ApertureProcess:
        kind = AdminAperture if admin else ApertureProcess
        process = kind(aperture_binary, regtest.seller, services, postgres=postgres)
        started.append(process)
        process.spawn()  # on the event loop's (main) thread: PR_SET_PDEATHSIG applies
        await asyncio.to_thread(process.wait_ready)
        return process

    yield start
    for process in started:
        pid = process.proc.pid if process.proc is not None else None
        await asyncio.to_thread(process.remove)
        assert pid is None or not pid_alive(pid), "Aperture still running after stop"
        assert not process.dir.exists(), "Aperture's data directory was left behind"


@pytest.fixture
async def aperture(
    start_aperture: StartAperture, aperture_services: list[ApertureService]
) -> ApertureProcess:
    """One Aperture with the SQLite backend selling `aperture_services`."""
    return await start_aperture(aperture_services)


@dataclass
class Purchase:
    """What our buyer got: the paid response and the credential it cached."""

    result: FetchResult
    macaroon: str
    preimage_hex: str

    @property
    def authorization(self) -> str:
        return f"L402 {self.macaroon}:{self.preimage_hex}"


@pytest.fixture
async def buyer_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as session:
        yield session


@pytest.fixture
def buy_with_our_buyer(buyer_admin: LndClient, buyer_session: aiohttp.ClientSession) -> Buy:
    """`await buy(url)`: our L402 buyer library pays on regtest and fetches `url`."""

    async def buy(url: str) -> Purchase:
        cache = CredentialCache()
        client = L402Client(
            buyer_session,
            LndPayer(buyer_admin),
            SpendPolicy(max_spend_msats=100_000, allowed_hosts=["127.0.0.1"]),
            cache,
        )
        result = await client.fetch("GET", url)
        assert result.paid, (result.outcome, result.status, result.body[:200])
        parts = urlsplit(url)
        status, credential = cache.lookup(f"{parts.hostname}:{parts.port}", parts.path, 0)
        assert credential is not None, status
        return Purchase(result, credential.macaroon, credential.preimage_hex)

    return buy


def convert_for_test(
    aperture: ApertureProcess, tmp_path: Path, *, complete: bool = True, **settings: Any
) -> Path:
    """convert-aperture on Aperture's real config, then what an operator edits by hand:
    a free admin port and a store path (tests must not use the defaults), and `settings`."""
    out = tmp_path / "routes.yaml"
    code = main(["convert-aperture", str(aperture.config_path), "-o", str(out)])
    assert code == (0 if complete else 1), "the harness' Aperture config converts as expected"
    document: dict[str, Any] = yaml.safe_load(out.read_text())
    assert document["listen"]["public"] == f"127.0.0.1:{aperture.port}"
    document["listen"]["public"] = f"127.0.0.1:{free_port()}"  # Aperture may still run
    document["listen"]["admin"] = f"127.0.0.1:{free_port()}"
    document["store"]["url"] = f"sqlite:///{tmp_path / 'tokens.db'}"
    document["challenge_rate_limit"] = {"per_minute": 0}  # every request comes from 127.0.0.1
    document.update(settings)
    out.write_text(yaml.safe_dump(document, sort_keys=False))
    return out


async def quote(session: aiohttp.ClientSession, url: str) -> tuple[int, int | None]:
    """(status, invoice amount in msat) of an unpaid GET, for either gateway."""
    async with session.get(url) as response:
        await response.read()
        if response.status != 402:
            return response.status, None
        challenge = parse_challenge(response.headers.getall("WWW-Authenticate"))
    return 402, decode_invoice(challenge.invoice).amount_msats
