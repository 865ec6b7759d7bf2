"""Real signed BOLT11 invoices and an HMAC-bound seller for the core's tests."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from coincurve import PrivateKey

from gateway.payment import challenge, lightning
from gateway.payment.verify import Binding
from tests.buyer.fakes import make_invoice

REALM = "api.example.test"


@dataclass
class Issuer:
    """Mints lightning challenges the way a seller would, keeping the preimages."""

    key: PrivateKey = field(default_factory=PrivateKey)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    preimages: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def binding(self) -> Binding:
        return Binding(REALM, self.secret)

    def invoice(
        self, sats: int | None, *, expiry: int = 3600, network: str = "bcrt"
    ) -> tuple[str, bytes]:
        preimage = secrets.token_bytes(32)
        payment_hash = hashlib.sha256(preimage).digest()
        self.preimages[payment_hash] = preimage
        msat = None if sats is None else sats * 1000
        return make_invoice(
            self.key, msat, payment_hash, network=network, expiry=expiry
        ), payment_hash

    def charge(
        self, sats: int, *, expires_in: int = 600, invoice_expiry: int = 3600, **extra: object
    ) -> tuple[challenge.ChallengeParams, bytes]:
        invoice, payment_hash = self.invoice(sats, expiry=invoice_expiry)
        request = lightning.ChargeRequest(sats, invoice, payment_hash, "regtest").to_json()
        request.update(extra)
        params = challenge.issue(
            self.secret, realm=REALM, method="lightning", intent="charge", request=request,
            expires=datetime.fromtimestamp(time.time() + expires_in, UTC),
        )  # fmt: skip
        return params, self.preimages[payment_hash]

    def session(
        self, unit_sats: int, multiplier: int = 20, *, expires_in: int = 600
    ) -> tuple[challenge.ChallengeParams, bytes]:
        deposit = lightning.deposit_sats(unit_sats, multiplier)
        invoice, payment_hash = self.invoice(deposit)
        request = lightning.SessionRequest(
            unit_sats, payment_hash, invoice, deposit, lightning.DEFAULT_IDLE_TIMEOUT
        ).to_json()
        params = challenge.issue(
            self.secret, realm=REALM, method="lightning", intent="session", request=request,
            expires=datetime.fromtimestamp(time.time() + expires_in, UTC),
        )  # fmt: skip
        return params, self.preimages[payment_hash]


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()
