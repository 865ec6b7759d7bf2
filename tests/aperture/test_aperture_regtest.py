"""The real Aperture v0.5.0 on regtest: its tokens, its database, our importer and core.

A token is bought from Aperture with our buyer library, then Aperture's own
database (SQLite, and PostgreSQL created by Aperture itself) is read with our
reader; the imported root key must verify the bought macaroon with our core
(`macaroons.signature_valid` and `verify.verify` under our caveat rules).
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from gateway.aperture.importer import check_snapshot, import_snapshot
from gateway.aperture.keystore import Snapshot, read_source
from gateway.l402 import macaroons
from gateway.l402.credentials import Credential
from gateway.l402.errors import L402Error, Reason
from gateway.l402.identifier import Identifier
from gateway.l402.verify import verify
from tests.aperture.conftest import (
    EXPENSIVE_PATH,
    PREMIUM_PATH,
    Buy,
    Purchase,
    StartAperture,
)
from tests.aperture.doubles import InMemoryKeyStore
from tests.support.aperture import ApertureProcess, ApertureService, PostgresBackend
from tests.support.postgres import SUPERUSER, PostgresServer

pytestmark = pytest.mark.regtest


def credential(purchase: Purchase) -> Credential:
    return Credential(
        macaroons.decode(purchase.macaroon), bytes.fromhex(purchase.preimage_hex), "L402"
    )


async def import_and_verify(snapshot: Snapshot, purchase: Purchase, service: str) -> int | None:
    """Import the snapshot into a test double; verify the purchase with our core."""
    cred = credential(purchase)
    key_id = hashlib.sha256(cred.macaroon.identifier).digest()
    store = InMemoryKeyStore()
    report = await import_snapshot(snapshot, store, {service})
    assert report.clean, report
    (imported,) = [k for k in store.imported if k.key_id == key_id]
    identifier = Identifier.decode(cred.macaroon.identifier)
    assert imported.token_id == identifier.token_id
    assert imported.payment_hash == identifier.payment_hash
    assert imported.service == service
    assert abs(imported.created_at - time.time()) < 600
    assert macaroons.signature_valid(imported.root_key, cred.macaroon)
    verified = verify(cred, imported.root_key, service, None, int(time.time()))
    assert verified.key_id == key_id
    # The key is what verifies: another key does not.
    assert not macaroons.signature_valid(bytes(32), cred.macaroon)
    return verified.valid_until


async def test_token_bought_from_aperture_verifies_with_the_imported_key(
    aperture: ApertureProcess, buy_with_our_buyer: Buy
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
    snapshot = await read_source(f"sqlite:{aperture.sqlite_path}")
    assert snapshot.has_transactions
    valid_until = await import_and_verify(snapshot, purchase, "premium")
    assert valid_until is not None
    assert abs(valid_until - (time.time() + 3600)) < 600
    # Aperture's capabilities caveat is enforced by our rules like ours.
    cred = credential(purchase)
    (key,) = [
        row.root_key
        for row in snapshot.secrets
        if row.key_id == hashlib.sha256(cred.macaroon.identifier).digest()
    ]
    verify(cred, key, "premium", "write", int(time.time()))
    with pytest.raises(L402Error) as refused:
        verify(cred, key, "premium", "admin", int(time.time()))
    assert refused.value.reason is Reason.MISSING_CAPABILITY
    with pytest.raises(L402Error) as wrong:
        verify(cred, key, "zero", None, int(time.time()))
    assert wrong.value.reason is Reason.WRONG_ROUTE


async def test_price_zero_costs_one_sat_and_mints_only_the_services_caveat(
    aperture: ApertureProcess, buy_with_our_buyer: Buy
) -> None:
    """The facts convert-aperture relies on: price 0 -> 1 sat, and the configured
    timeout (60 s here) is not minted for such a service by Aperture v0.5.0."""
    purchase = await buy_with_our_buyer(aperture.url + EXPENSIVE_PATH)
    assert purchase.result.quote_msats == 1_000
    assert credential(purchase).macaroon.caveats == ("services=zero:0",)
    await aperture_stopped(aperture)
    snapshot = await read_source(f"sqlite:{aperture.sqlite_path}")
    assert await import_and_verify(snapshot, purchase, "zero") is None


async def test_every_challenge_leaves_a_key_and_reimport_is_harmless(
    aperture: ApertureProcess, buy_with_our_buyer: Buy
) -> None:
    """Unpaid challenges also have root keys (a buyer may still pay them): all imported."""
    await buy_with_our_buyer(aperture.url + PREMIUM_PATH)
    await buy_with_our_buyer(aperture.url + EXPENSIVE_PATH)
    await aperture_stopped(aperture)
    snapshot = await read_source(f"sqlite:{aperture.sqlite_path}")
    assert len(snapshot.secrets) >= 2
    report, keys = check_snapshot(snapshot, {"premium", "zero"})
    assert report.clean
    assert report.unknown_services == {}
    store = InMemoryKeyStore()
    first = await import_snapshot(snapshot, store, {"premium", "zero"})
    second = await import_snapshot(snapshot, store, {"premium", "zero"})
    assert first.imported == len(keys)
    assert (second.imported, second.already_present) == (0, len(keys))


@pytest.mark.postgres
async def test_postgres_database_created_by_aperture(
    start_aperture: StartAperture,
    aperture_services: list[ApertureService],
    postgres_server: PostgresServer,
    buy_with_our_buyer: Buy,
) -> None:
    database = postgres_server.create_database()
    try:
        backend = PostgresBackend("127.0.0.1", postgres_server.port, SUPERUSER, database)
        aperture = await start_aperture(aperture_services, postgres=backend)
        purchase = await buy_with_our_buyer(aperture.url + PREMIUM_PATH)
        await aperture_stopped(aperture)
        snapshot = await read_source(postgres_server.url(database))
        assert snapshot.description == f"postgres 127.0.0.1:{postgres_server.port}/{database}"
        assert snapshot.has_transactions
        assert await import_and_verify(snapshot, purchase, "premium") is not None
    finally:
        postgres_server.drop_database(database)


async def aperture_stopped(aperture: ApertureProcess) -> None:
    """Stop Aperture before reading its database, as the migration guide says."""
    import asyncio

    await asyncio.to_thread(aperture.stop)
