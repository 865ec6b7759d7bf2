"""The real Aperture v0.5.0 on regtest: its tokens, its database, our importer and core.

A token is bought from Aperture with our buyer library, then Aperture's own
database (SQLite, and PostgreSQL created by Aperture itself) is imported into
our real store; the imported root key must verify the bought macaroon with
our core (`macaroons.signature_valid` and `verify.verify` under our caveat
rules).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from gateway.aperture.importer import ImportReport, run_import
from gateway.aperture.keystore import open_source
from gateway.aperture.options import ImportOptions
from gateway.l402 import macaroons
from gateway.l402.credentials import Credential
from gateway.l402.errors import L402Error, Reason
from gateway.l402.identifier import Identifier
from gateway.l402.verify import verify
from gateway.store import open_store
from tests.aperture.conftest import (
    EXPENSIVE_PATH,
    PREMIUM_PATH,
    Buy,
    Purchase,
    StartAperture,
)
from tests.support.aperture import ApertureProcess, ApertureService, PostgresBackend
from tests.support.postgres import SUPERUSER, PostgresServer

pytestmark = pytest.mark.regtest


def credential(purchase: Purchase) -> Credential:
    return Credential(
        macaroons.decode(purchase.macaroon), bytes.fromhex(purchase.preimage_hex), "L402"
    )


async def import_into(
    source_url: str, store_dir: Path, services: set[str]
) -> tuple[ImportReport, dict[bytes, bytes]]:
    """Import Aperture's database into a fresh SQLite store of ours; (report, key id -> key)."""
    lines: list[str] = []
    source = await open_source(source_url)
    store = await open_store(f"sqlite:///{store_dir / 'tokens.db'}")
    try:
        report = await run_import(source, store, ImportOptions(services), lines.append)
        keys: dict[bytes, bytes] = {}
        for ref in await store.live_imported_keys("aperture", limit=10_000):
            root_key = await store.get_root_key(ref.key_id)
            assert root_key is not None
            keys[ref.key_id] = root_key
    finally:
        await store.close()
        await source.close()
    assert lines == [], lines
    return report, keys


async def import_and_verify(
    source_url: str, store_dir: Path, purchase: Purchase, service: str
) -> int | None:
    """Import into our store; verify the purchase with our core and the imported key."""
    cred = credential(purchase)
    key_id = hashlib.sha256(cred.macaroon.identifier).digest()
    store = await open_store(f"sqlite:///{store_dir / 'tokens.db'}")
    await store.close()
    report, keys = await import_into(source_url, store_dir, {service})
    assert report.clean, report
    root_key = keys[key_id]
    store = await open_store(f"sqlite:///{store_dir / 'tokens.db'}")
    try:
        identifier = Identifier.decode(cred.macaroon.identifier)
        info = await store.find_token(identifier.token_id)
    finally:
        await store.close()
    assert info is not None
    assert info.imported
    assert info.payment_hash == identifier.payment_hash
    assert info.route == service
    assert abs(info.created_at - time.time()) < 600
    assert macaroons.signature_valid(root_key, cred.macaroon)
    verified = verify(cred, root_key, service, None, int(time.time()))
    assert verified.key_id == key_id
    # The key is what verifies: another key does not.
    assert not macaroons.signature_valid(bytes(32), cred.macaroon)
    return verified.valid_until


async def test_token_bought_from_aperture_verifies_with_the_imported_key(
    aperture: ApertureProcess, buy_with_our_buyer: Buy, tmp_path: Path
) -> None:
    purchase = await buy_with_our_buyer(aperture.url + PREMIUM_PATH)
    assert purchase.result.status == 200
    assert purchase.result.quote_msats == 10_000
    # Stock Aperture forwards two Authorization headers upstream (the duplicate EP212's
    # CDN refused, which this gateway never sends).
    assert json.loads(purchase.result.body)["authorizationHeaders"] == 2
    # Aperture's caveats, in its order; every one is a caveat our verifier understands.
    caveats = credential(purchase).macaroon.caveats
    assert caveats[:2] == ("services=premium:0", "premium_capabilities=read,write")
    assert caveats[2].startswith("premium_valid_until=")
    assert len(caveats) == 3
    await aperture_stopped(aperture)
    source = f"sqlite:{aperture.sqlite_path}"
    valid_until = await import_and_verify(source, tmp_path, purchase, "premium")
    assert valid_until is not None
    assert abs(valid_until - (time.time() + 3600)) < 600
    # Aperture's capabilities caveat is enforced by our rules like ours.
    cred = credential(purchase)
    _, keys = await import_into(source, tmp_path, {"premium"})
    key = keys[hashlib.sha256(cred.macaroon.identifier).digest()]
    verify(cred, key, "premium", "write", int(time.time()))
    with pytest.raises(L402Error) as refused:
        verify(cred, key, "premium", "admin", int(time.time()))
    assert refused.value.reason is Reason.MISSING_CAPABILITY
    with pytest.raises(L402Error) as wrong:
        verify(cred, key, "zero", None, int(time.time()))
    assert wrong.value.reason is Reason.WRONG_ROUTE


async def test_price_zero_costs_one_sat_and_mints_only_the_services_caveat(
    aperture: ApertureProcess, buy_with_our_buyer: Buy, tmp_path: Path
) -> None:
    """The facts convert-aperture relies on: price 0 -> 1 sat, and the configured
    timeout (60 s here) is not minted for such a service by Aperture v0.5.0."""
    purchase = await buy_with_our_buyer(aperture.url + EXPENSIVE_PATH)
    assert purchase.result.quote_msats == 1_000
    assert credential(purchase).macaroon.caveats == ("services=zero:0",)
    await aperture_stopped(aperture)
    source = f"sqlite:{aperture.sqlite_path}"
    assert await import_and_verify(source, tmp_path, purchase, "zero") is None


async def test_every_challenge_leaves_a_key_and_reimport_is_harmless(
    aperture: ApertureProcess, buy_with_our_buyer: Buy, tmp_path: Path
) -> None:
    """Unpaid challenges also have root keys (a buyer may still pay them): all imported."""
    await buy_with_our_buyer(aperture.url + PREMIUM_PATH)
    await buy_with_our_buyer(aperture.url + EXPENSIVE_PATH)
    await aperture_stopped(aperture)
    source = f"sqlite:{aperture.sqlite_path}"
    first, keys = await import_into(source, tmp_path, {"premium", "zero"})
    assert first.clean
    assert first.rows >= 2
    assert first.unknown_services == {}
    assert first.imported == first.rows == len(keys)
    second, _ = await import_into(source, tmp_path, {"premium", "zero"})
    assert (second.imported, second.already_present) == (0, first.rows)


@pytest.mark.postgres
async def test_postgres_database_created_by_aperture(
    start_aperture: StartAperture,
    aperture_services: list[ApertureService],
    postgres_server: PostgresServer,
    buy_with_our_buyer: Buy,
    tmp_path: Path,
) -> None:
    database = postgres_server.create_database()
    try:
        backend = PostgresBackend("127.0.0.1", postgres_server.port, SUPERUSER, database)
        aperture = await start_aperture(aperture_services, postgres=backend)
        purchase = await buy_with_our_buyer(aperture.url + PREMIUM_PATH)
        await aperture_stopped(aperture)
        source = await open_source(postgres_server.url(database))
        try:
            assert source.description == f"postgres 127.0.0.1:{postgres_server.port}/{database}"
            assert "l402_transactions" in source.tables
        finally:
            await source.close()
        url = postgres_server.url(database)
        assert await import_and_verify(url, tmp_path, purchase, "premium") is not None
    finally:
        postgres_server.drop_database(database)


async def aperture_stopped(aperture: ApertureProcess) -> None:
    """Stop Aperture before reading its database, as the migration guide says."""
    import asyncio

    await asyncio.to_thread(aperture.stop)
