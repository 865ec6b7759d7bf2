"""Credential forms real clients send, broken credentials, and an independent oracle."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymacaroons import MACAROON_V1, MACAROON_V2, Macaroon, Verifier

from gateway.l402 import macaroons
from gateway.l402.identifier import Identifier
from gateway.store import open_store
from tests.gateway.harness import Bought, Buy, Gateway, fetch

pytestmark = pytest.mark.regtest

PREMIUM = "/ep212/premium-signal"


async def refused(
    gateway: Gateway, session: aiohttp.ClientSession, headers: dict[str, str], path: str = PREMIUM
) -> tuple[int, dict[str, Any]]:
    """Send a credential that must be refused; check the fresh challenge that comes back."""
    async with session.get(gateway.url(path), headers=headers) as r:
        body = await r.json()
        assert r.status in (401, 402), (r.status, body)
        assert [v.split(" ", 1)[0] for v in r.headers.getall("WWW-Authenticate")] == [
            "LSAT",
            "L402",
        ]
        assert r.headers["Cache-Control"] == "no-store"
        assert body["invoice"].startswith("lnbcrt")
        macaroons.decode(body["macaroon"])
        return r.status, body


def _flip(raw: bytes, index: int) -> bytes:
    out = bytearray(raw)
    out[index] ^= 0x01
    return bytes(out)


async def test_broken_credentials_get_401_and_a_fresh_challenge(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    bought = await buy(session, gateway.url(PREMIUM))
    decoded = macaroons.decode(bought.macaroon)
    raw = decoded.raw
    caveat_at = raw.index(b"services=premium:0") + len("services=")

    forged = macaroons.mint(os.urandom(32), decoded.identifier, decoded.caveats)
    v1 = Macaroon(  # V1 identifiers are text
        location="lsat",
        identifier=decoded.identifier.hex(),
        key=os.urandom(32),
        version=MACAROON_V1,
    )
    v1.add_first_party_caveat("services=premium:0")
    cases: dict[str, tuple[str, str]] = {
        "forged": (macaroons.encode_b64(forged), "bad_signature"),
        "tampered-signature": (macaroons.encode_b64(_flip(raw, len(raw) - 1)), "bad_signature"),
        "tampered-caveat": (macaroons.encode_b64(_flip(raw, caveat_at)), "bad_signature"),
        "tampered-length": (macaroons.encode_b64(_flip(raw, 1)), "malformed"),
        "truncated": (macaroons.encode_b64(raw[:-7]), "malformed"),
        "trailing": (macaroons.encode_b64(raw + b"\x00"), "malformed"),
        "v1": (v1.serialize(), "malformed"),
        "junk-base64": ("!!not*base64!!", "malformed"),
        "whitespace-in-base64": (bought.macaroon[:10] + " " + bought.macaroon[10:], "malformed"),
    }
    for name, (mac, reason) in cases.items():
        status, body = await refused(
            gateway, session, {"Authorization": f"L402 {mac}:{bought.preimage}"}
        )
        assert (status, body["reason"]) == (401, reason), name

    wrong_preimage = os.urandom(32).hex()
    status, body = await refused(
        gateway, session, {"Authorization": f"L402 {bought.macaroon}:{wrong_preimage}"}
    )
    assert (status, body["reason"]) == (401, "preimage_mismatch")
    for bad_preimage in (bought.preimage[:-2], bought.preimage + "00" * 16, "zz" * 32):
        status, body = await refused(
            gateway, session, {"Authorization": f"L402 {bought.macaroon}:{bad_preimage}"}
        )
        assert (status, body["reason"]) == (401, "malformed")

    # Two Authorization headers that disagree are refused, not resolved by guessing.
    other = await buy(session, gateway.url(PREMIUM))
    async with session.get(
        gateway.url(PREMIUM),
        headers=[("Authorization", bought.authorization), ("Authorization", other.authorization)],
    ) as r:
        assert r.status == 401
        assert (await r.json())["reason"] == "malformed"

    # A genuine token this gateway never minted (unknown root key) cannot buy anything.
    preimage = os.urandom(32)
    ident = Identifier.new(hashlib.sha256(preimage).digest())
    stranger = macaroons.mint(os.urandom(32), ident.encode(), ["services=premium:0"])
    status, body = await refused(
        gateway,
        session,
        {"Authorization": f"L402 {macaroons.encode_b64(stranger)}:{preimage.hex()}"},
    )
    assert (status, body["reason"]) == (402, "revoked")

    text = await gateway.metrics()
    assert "l402_auth_failures_total" in text
    assert (
        await gateway.metric("l402_auth_failures_total", route="premium", reason="bad_signature")
        == 3
    )
    # The real credential still works after all of that.
    status, _, _ = await fetch(session, "GET", gateway.url(PREMIUM), headers=bought.auth)
    assert status == 200


def _forms(bought: Bought) -> dict[str, list[tuple[str, str]]]:
    decoded = macaroons.decode(bought.macaroon)
    grpc_mac = macaroons.add_caveat(decoded, f"preimage={bought.preimage}")
    url_safe = base64.urlsafe_b64encode(decoded.raw).decode().rstrip("=")
    return {
        "l402": [("Authorization", bought.authorization)],
        "lsat": [("Authorization", f"LSAT {bought.macaroon}:{bought.preimage}")],
        "lowercase-scheme-upper-hex": [
            ("Authorization", f"l402 {bought.macaroon}:{bought.preimage.upper()}")
        ],
        "params": [
            (
                "Authorization",
                f'L402 macaroon="{bought.macaroon}", preimage="{bought.preimage}"',
            )
        ],
        "token-param": [
            (
                "Authorization",
                f'L402 version="0", token="{bought.macaroon}", preimage="{bought.preimage}"',
            )
        ],
        "url-safe-unpadded": [("Authorization", f"L402 {url_safe}:{bought.preimage}")],
        "grpc-metadata": [("Grpc-Metadata-Macaroon", macaroons.encode_hex(grpc_mac))],
        "macaroon-header": [("Macaroon", macaroons.encode_hex(grpc_mac))],
        "lsat-and-l402": [
            ("Authorization", f"LSAT {bought.macaroon}:{bought.preimage}"),
            ("Authorization", bought.authorization),
        ],
        "bearer-beside-l402": [
            ("Authorization", "Bearer something-for-someone-else"),
            ("Authorization", bought.authorization),
        ],
    }


async def test_every_credential_form_is_accepted(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    bought = await buy(session, gateway.url(PREMIUM))
    for name, headers in _forms(bought).items():
        async with session.get(gateway.url(PREMIUM), headers=headers) as r:
            assert r.status == 200, (name, await r.text())
            payload = await r.json()
        assert payload["authorizationHeaders"] == 1, name


async def test_credential_forms_each_verified_fresh(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    """The forms above again, with the verified cache emptied before each request."""
    bought = await buy(session, gateway.url(PREMIUM))
    for name, headers in _forms(bought).items():
        assert gateway.server.reload(gateway.config_path)  # clears the verified cache
        status, _, body = await fetch(session, "GET", gateway.url(PREMIUM), headers=headers)
        assert status == 200, (name, body)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def test_minted_token_verifies_with_pymacaroons(
    gateway: Gateway, session: aiohttp.ClientSession, buy: Buy
) -> None:
    """pymacaroons (an independent implementation) agrees with the gateway's tokens."""
    bought = await buy(session, gateway.url("/expiring"))
    raw = base64.b64decode(bought.macaroon, validate=True)
    assert base64.b64encode(raw).decode() == bought.macaroon  # std alphabet, padded

    mac = Macaroon.deserialize(bought.macaroon)
    assert mac.version == MACAROON_V2
    assert mac.location == "lsat"
    ident = Identifier.decode(mac.identifier_bytes)
    assert ident.payment_hash.hex() == bought.challenge["payment_hash"]
    valid_until = int(gateway.clock()) + 60
    expected = ["services=expiring:0", f"expiring_valid_until={valid_until}"]
    assert [_text(c.caveat_id) for c in mac.first_party_caveats()] == expected

    store = await open_store(gateway.document["store"]["url"])
    try:
        root_key = await store.get_root_key(ident.key_id)
    finally:
        await store.close()
    assert root_key is not None
    assert len(root_key) == 32

    verifier = Verifier()
    verifier.satisfy_general(lambda caveat: _text(caveat) in expected)
    assert verifier.verify(mac, root_key)

    # Rebuilt from scratch by pymacaroons with the same key: byte-identical.
    rebuilt = Macaroon(
        location="lsat", identifier=mac.identifier_bytes, key=root_key, version=MACAROON_V2
    )
    for caveat in expected:
        rebuilt.add_first_party_caveat(caveat)
    assert rebuilt.signature_bytes == mac.signature_bytes
    assert base64.urlsafe_b64decode(rebuilt.serialize() + "==") == raw

    strict = Verifier()
    strict.satisfy_exact("services=expiring:0")
    with pytest.raises(Exception):  # noqa: B017, PT011 - pymacaroons' error types vary
        strict.verify(mac, root_key)
    with pytest.raises(Exception):  # noqa: B017, PT011
        verifier.verify(mac, os.urandom(32))


# Printable ASCII mostly, plus Latin-1 and a few non-ASCII digits and spaces that
# str.isdigit / \\s / int() would accept.
_HEADER_CHARS = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.characters(min_codepoint=0xA0, max_codepoint=0xFF),
    st.sampled_from(["\u0663", "\u00b2", "\uff11", "\u2003", "\u00a0", "\u212a"]),
)
_B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_"


def _header_values(macaroon_b64: str) -> st.SearchStrategy[str]:
    scheme = st.sampled_from(["L402", "LSAT", "l402", "Bearer", "Basic", "", "L402 L402"])
    b64ish = st.text(alphabet=_B64_CHARS, max_size=300)
    hexish = st.one_of(
        st.text(alphabet="0123456789abcdefABCDEFxyz", max_size=100),
        st.text(alphabet="0123456789abcdef\u0663\uff11", min_size=64, max_size=64),
    )
    mutated = st.builds(
        lambda i, c: macaroon_b64[:i] + c + macaroon_b64[i + 1 :],
        st.integers(0, len(macaroon_b64) - 1),
        st.sampled_from([*_B64_CHARS, " ", '"', ",", ":"]),
    )
    return st.one_of(
        st.text(alphabet=_HEADER_CHARS, max_size=400),
        st.builds(lambda s, m, p: f"{s} {m}:{p}", scheme, st.one_of(b64ish, mutated), hexish),
        st.builds(
            lambda s, m, p: f'{s} macaroon="{m}", preimage="{p}"',
            scheme,
            st.one_of(b64ish, mutated),
            hexish,
        ),
        st.builds(lambda s, t: f"{s} {t}", scheme, st.text(alphabet=_HEADER_CHARS, max_size=200)),
    )


async def test_arbitrary_authorization_headers_never_cause_5xx(
    gateway: Gateway, session: aiohttp.ClientSession
) -> None:
    """Property: whatever Authorization a client sends, the answer is never a 5xx.

    Every refusal mints a real invoice on LND, so the example count is bounded.
    Hypothesis runs in a worker thread; requests run on the test's event loop.
    """
    async with session.get(gateway.url(PREMIUM)) as r:
        sample_macaroon = (await r.json())["macaroon"]
    loop = asyncio.get_running_loop()
    seen: list[tuple[str, int]] = []

    async def send(value: str, header: str) -> int:
        async with session.get(gateway.url(PREMIUM), headers={header: value}) as r:
            await r.read()
            return r.status

    @settings(
        max_examples=100,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        value=_header_values(sample_macaroon),
        header=st.sampled_from(["Authorization", "Authorization", "Grpc-Metadata-Macaroon"]),
    )
    def prop(value: str, header: str) -> None:
        status = asyncio.run_coroutine_threadsafe(send(value, header), loop).result(timeout=60)
        seen.append((value, status))
        assert status < 500, (header, value, status)

    await asyncio.to_thread(prop)
    assert len(seen) >= 50
    assert any(status == 401 for _, status in seen)
