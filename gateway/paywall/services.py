"""What deciding needs once the store and the Lightning backend are open, wired once.

The proxy (gateway.server.app) and the embedded middleware (gateway.embed)
both build their `Services` here, from the same configuration rules: the
verified-credential cache, the challenge issuer with its rate limiter and
price source, the single-use lease keeper and the paid-request counter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.config.model import GatewayConfig
from gateway.l402.entropy import EntropyPool
from gateway.l402.mint import InvoiceSource, Minter
from gateway.lightning.backend import RefundPayer
from gateway.observability.metrics import GatewayMetrics
from gateway.payment.verify import Binding
from gateway.paywall.challenges import ChallengeIssuer
from gateway.paywall.leases import LeaseKeeper
from gateway.paywall.mpp.offers import OfferMinter
from gateway.paywall.mpp.refunds import Refunder
from gateway.paywall.mpp.seller import PaymentSeller
from gateway.paywall.ratelimit import (
    ChallengeLimiter,
    LocalChallengeLimiter,
    SharedChallengeLimiter,
)
from gateway.paywall.usage import UsageCounter
from gateway.paywall.verifier import Authenticator, VerifiedCache
from gateway.pricer.prices import Pricer
from gateway.store.roles import Store

VERIFIED_CACHE_TTL = 60.0


@dataclass(frozen=True)
class PaymentParts:
    """What selling the Payment scheme needs from outside: the challenge binding (its
    secret shared through the store) and the refund payer (None: refunds fail)."""

    binding: Binding
    refunds: RefundPayer | None


@dataclass(frozen=True)
class Services:
    auth: Authenticator
    issuer: ChallengeIssuer
    leases: LeaseKeeper
    usage: UsageCounter
    payment: PaymentSeller | None = None  # the Payment scheme (MPP); None: L402 only


def challenge_limiter(config: GatewayConfig, store: Store) -> ChallengeLimiter:
    """Buckets in the store (SQLite and PostgreSQL alike): N workers or replicas must not
    give a client N allowances (docs/decisions.md); per-process ones only for a store that
    cannot share them."""
    limit = config.challenge_rate_limit
    if store.shares_rate_limits:
        return SharedChallengeLimiter(store, limit.per_minute, limit.burst)
    return LocalChallengeLimiter(limit.per_minute, limit.burst)


def build_services(
    config: GatewayConfig,
    store: Store,
    invoices: InvoiceSource,
    metrics: GatewayMetrics,
    clock: Callable[[], float],
    pricer: Pricer | None,
    payment: PaymentParts | None = None,
) -> Services:
    """The paywall's collaborators (`pricer` None: no route has a pricing hook;
    `payment` None: the Payment scheme is not sold)."""
    leases = LeaseKeeper(store, metrics, clock)
    entropy = EntropyPool()  # root keys and token ids from 8 KiB kernel blocks
    minter = seller = None
    if payment is not None:
        minter = OfferMinter(
            invoices, store, payment.binding, config.payment, random_bytes=entropy.take
        )
        refunds = Refunder(store, payment.refunds, config.payment.sessions, metrics)
        seller = PaymentSeller(minter, store, leases, refunds, metrics, clock)
    return Services(
        auth=Authenticator(
            store, VerifiedCache(config.verified_cache_size, VERIFIED_CACHE_TTL), clock
        ),
        issuer=ChallengeIssuer(
            Minter(invoices, store, random_bytes=entropy.take),
            challenge_limiter(config, store),
            metrics,
            clock,
            pricer=pricer,
            offers=minter,
        ),
        leases=leases,
        usage=UsageCounter(),
        payment=seller,
    )
