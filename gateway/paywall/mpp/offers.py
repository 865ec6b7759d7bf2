"""Minting the Payment scheme's challenges for a 402: one invoice per intent offered.

Each offer's invoice is stored as an `l402_tokens` row of its scheme
(`charge`, `session`) keyed by the payment hash, with a random root key that
no macaroon can name: the settlement follower books its revenue, the pruner
removes it when unpaid, `revoke` disables it, and its single use (a charge
buys one request, a deposit opens one session) is the token row's. The
challenge binds the route in `opaque`, so a credential for one route cannot
buy another of the same price.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.config.model import PaymentConfig
from gateway.l402.mint import InvoiceSource, RootKeyStore
from gateway.l402.records import TokenRecord
from gateway.payment import challenge as payment_challenge
from gateway.payment import lightning
from gateway.payment.bolt11 import read_invoice
from gateway.payment.challenge import ChallengeParams
from gateway.payment.verify import Binding
from gateway.payment.wwwauth import format_challenge
from gateway.paywall.routes import RouteRuntime

CHARGE = "charge"
SESSION = "session"


def price_sats(price_msat: int) -> int:
    """A Payment-scheme price: whole satoshis, rounded up (the request objects carry sats)."""
    return -(-price_msat // 1000)


def route_opaque(runtime: RouteRuntime) -> dict[str, str]:
    """What a challenge binds besides its request: the route it was issued for."""
    return {"route": runtime.name}


class OfferMinter:
    """Issues a route's Payment offers: mints each invoice, stores its row, signs the
    challenge under the server's binding secret."""

    def __init__(
        self,
        invoices: InvoiceSource,
        rows: RootKeyStore,
        binding: Binding,
        policy: PaymentConfig,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._random = random_bytes
        self._invoices = invoices
        self._rows = rows
        self.binding = binding
        self.policy = policy

    def intents(self, runtime: RouteRuntime) -> tuple[str, ...]:
        if not runtime.route.sells_payment:
            return ()
        return (CHARGE, SESSION) if self.policy.sessions.enabled else (CHARGE,)

    async def offers(self, runtime: RouteRuntime, price_msat: int, now: int) -> tuple[str, ...]:
        """The WWW-Authenticate values of every intent the route offers (in order)."""
        found: list[str] = []
        for intent in self.intents(runtime):
            params = await (
                self._charge(runtime, price_msat, now)
                if intent == CHARGE
                else self._session(runtime, price_msat, now)
            )
            found.append(format_challenge(params))
        return tuple(found)

    async def _invoice(
        self, runtime: RouteRuntime, amount_msat: int, scheme: str, now: int, expires: int
    ) -> tuple[str, bytes, str]:
        """(invoice, payment hash, network) of a fresh invoice, its row stored."""
        route = runtime.route
        added = await self._invoices.add_invoice(
            amount_msat,
            f"{route.memo} ({scheme})",
            min(route.invoice_expiry_seconds, expires - now),
            route.private_invoices,
        )
        await self._rows.put_token(
            TokenRecord(
                key_id=added.payment_hash,
                token_id=self._random(32),
                payment_hash=added.payment_hash,
                route=route.name,
                root_key=self._random(32),
                price_msat=amount_msat,
                single_use=True,
                created_at=now,
                valid_until=expires,
                scheme=scheme,
            )
        )
        network = read_invoice(added.payment_request).network
        return added.payment_request, added.payment_hash, network

    def _expires(self, now: int) -> int:
        return now + self.policy.challenge_ttl_seconds

    def _issue(
        self, runtime: RouteRuntime, intent: str, request: dict[str, object], expires: int
    ) -> ChallengeParams:
        return payment_challenge.issue(
            self.binding.secret,
            realm=self.binding.realm,
            method=lightning.METHOD,
            intent=intent,
            request=request,
            expires=datetime.fromtimestamp(expires, UTC),
            opaque=route_opaque(runtime),
        )

    async def _charge(self, runtime: RouteRuntime, price_msat: int, now: int) -> ChallengeParams:
        sats = price_sats(price_msat)
        expires = self._expires(now)
        invoice, payment_hash, network = await self._invoice(
            runtime, sats * 1000, CHARGE, now, expires
        )
        request = lightning.ChargeRequest(sats, invoice, payment_hash, network).to_json()
        return self._issue(runtime, CHARGE, request, expires)

    async def _session(self, runtime: RouteRuntime, price_msat: int, now: int) -> ChallengeParams:
        sessions = self.policy.sessions
        unit = price_sats(price_msat)
        deposit = lightning.deposit_sats(unit, sessions.deposit_multiplier)
        expires = self._expires(now)
        invoice, payment_hash, _ = await self._invoice(
            runtime, deposit * 1000, SESSION, now, expires
        )
        request = lightning.SessionRequest(
            unit, payment_hash, invoice, deposit, sessions.idle_timeout_seconds
        ).to_json()
        return self._issue(runtime, SESSION, request, expires)
