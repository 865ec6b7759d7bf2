"""The authenticator's verified-credential cache, on a real SQLite token store."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config.model import Route
from gateway.l402.errors import L402Error, Reason
from gateway.l402.mint import Challenge, Minter, MintRequest
from gateway.paywall.verifier import Authenticator, VerifiedCache, credential_headers
from gateway.store import open_store
from gateway.store.roles import Store
from tests.support.invoices import MemoryInvoiceSource


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


ROUTE = Route(name="premium", path=re.compile("^/p$"), upstream="http://u", price_msat=10_000)
OTHER = Route(name="other", path=re.compile("^/o$"), upstream="http://u", price_msat=10_000)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite:///{tmp_path}/tokens.db")
    yield s
    await s.close()


async def _mint(store: Store, clock: Clock, validity: int | None = None) -> tuple[Challenge, bytes]:
    source = MemoryInvoiceSource()
    request = MintRequest(
        route="premium",
        service="premium",
        price_msat=10_000,
        memo="m",
        expiry=600,
        validity_seconds=validity,
    )
    challenge = await Minter(source, store).mint(request, int(clock()))
    return challenge, source.preimage_for(challenge.payment_hash)


class CountingStore:
    """Wraps the real store to count root-key lookups."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.lookups = 0

    async def get_root_key(self, key_id: bytes) -> bytes | None:
        self.lookups += 1
        return await self.inner.get_root_key(key_id)


async def test_repeat_request_is_served_from_cache(store: Store) -> None:
    clock = Clock()
    challenge, preimage = await _mint(store, clock)
    counting = CountingStore(store)
    auth = Authenticator(counting, VerifiedCache(100, 60), clock)
    headers = [("Authorization", f"L402 {challenge.macaroon_b64}:{preimage.hex()}")]
    first = await auth.admit(headers, ROUTE)
    second = await auth.admit(headers, ROUTE)
    assert first is not None
    assert second is first
    assert counting.lookups == 1
    assert auth.cache.hits == 1
    assert first.authorization == headers[0][1]


async def test_forwarded_authorization_is_canonical_whatever_the_form(store: Store) -> None:
    clock = Clock()
    challenge, preimage = await _mint(store, clock)
    auth = Authenticator(store, VerifiedCache(100, 60), clock)
    headers = [
        (
            "authorization",
            f'LSAT macaroon="{challenge.macaroon_b64}", preimage="{preimage.hex().upper()}"',
        )
    ]
    admission = await auth.admit(headers, ROUTE)
    assert admission is not None
    assert admission.authorization == f"L402 {challenge.macaroon_b64}:{preimage.hex()}"


async def test_expiry_is_checked_on_a_cache_hit(store: Store) -> None:
    clock = Clock()
    challenge, preimage = await _mint(store, clock, validity=60)
    auth = Authenticator(store, VerifiedCache(100, 3600), clock)
    headers = [("Authorization", f"L402 {challenge.macaroon_b64}:{preimage.hex()}")]
    assert await auth.admit(headers, ROUTE) is not None
    clock.now += 61
    with pytest.raises(L402Error) as exc:
        await auth.admit(headers, ROUTE)
    assert exc.value.reason is Reason.EXPIRED
    assert len(auth.cache) == 0


async def test_cache_entries_are_per_route(store: Store) -> None:
    clock = Clock()
    challenge, preimage = await _mint(store, clock)
    auth = Authenticator(store, VerifiedCache(100, 60), clock)
    headers = [("Authorization", f"L402 {challenge.macaroon_b64}:{preimage.hex()}")]
    assert await auth.admit(headers, ROUTE) is not None
    with pytest.raises(L402Error) as exc:
        await auth.admit(headers, OTHER)
    assert exc.value.reason is Reason.WRONG_ROUTE


async def test_revocation_takes_effect_after_ttl(store: Store) -> None:
    clock = Clock()
    mono = Clock(0.0)
    challenge, preimage = await _mint(store, clock)
    auth = Authenticator(store, VerifiedCache(100, 60, clock=mono), clock)
    headers = [("Authorization", f"L402 {challenge.macaroon_b64}:{preimage.hex()}")]
    assert await auth.admit(headers, ROUTE) is not None
    assert await store.revoke(challenge.token_id_hex)
    assert await auth.admit(headers, ROUTE) is not None  # still cached
    mono.now += 61
    with pytest.raises(L402Error) as exc:
        await auth.admit(headers, ROUTE)
    assert exc.value.reason is Reason.REVOKED


async def test_no_credential_headers_means_challenge(store: Store) -> None:
    auth = Authenticator(store, VerifiedCache(100, 60), Clock())
    assert await auth.admit([], ROUTE) is None
    assert await auth.admit([("Authorization", "Bearer abc")], ROUTE) is None


def test_cache_is_bounded_lru_and_keyed_by_digest() -> None:
    cache = VerifiedCache(size=2, ttl=60)
    keys = [VerifiedCache.key("r", [("Authorization", f"L402 m{i}:p")]) for i in range(3)]
    assert all(len(k) == 32 for k in keys)  # a digest: the credential itself is not kept
    sentinel = object()
    for k in keys:
        cache.put(k, sentinel)  # type: ignore[arg-type]
    assert len(cache) == 2
    assert cache.get(keys[0]) is None
    assert cache.get(keys[2]) is sentinel


def test_only_credential_headers_are_considered() -> None:
    headers = [
        ("Host", "x"),
        ("Authorization", "L402 a:b"),
        ("Grpc-Metadata-Macaroon", "00"),
        ("Cookie", "c"),
        ("macaroon", "11"),
    ]
    assert credential_headers(headers) == [
        ("Authorization", "L402 a:b"),
        ("Grpc-Metadata-Macaroon", "00"),
        ("macaroon", "11"),
    ]
