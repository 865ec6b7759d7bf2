"""What a paid request holds, from its route and its credential's identity: one function.

`hold_for` is what `Paywall.admit` calls once a credential is verified (and
what another scheme's admission calls with its own `CredentialKey`,
gateway.paywall.credentialkeys):

1. the route's `rate_limits`, for this credential (429 before anything is held);
2. a single-use token's lease (gateway.paywall.leases), or
3. a metered route's reservation: on the gateway's own balance (`bundle:`,
   gateway.paywall.metered) or with the route's pricer (`pricing: {grpc: ...,
   metered: true}`, gateway.paywall.pricerhold);
4. nothing for a reusable token on an unmetered route.

A metered route's request is looked at more closely than others (its body's
`max_tokens`, the request text for a pricer) only here, through the
transport's `RequestDetails`.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.config.model import Route
from gateway.l402.verify import VerifiedToken
from gateway.paywall.credentialkeys import CredentialKey
from gateway.paywall.holds import Hold, LeaseHold
from gateway.paywall.leases import LeaseKeeper
from gateway.paywall.metered import BundleMeter
from gateway.paywall.pricerhold import PricerMeter
from gateway.paywall.requestquotas import RequestQuotas
from gateway.pricer.requestview import RequestDetails, RequestView


class Meters:
    """The paywall's metering services: the embedded meter and, if any route has one, pricers."""

    def __init__(self, bundles: BundleMeter, pricers: PricerMeter | None) -> None:
        self.bundles = bundles
        self.pricers = pricers

    async def hold(
        self,
        route: Route,
        key: CredentialKey,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]],
        details: RequestDetails | None,
    ) -> Hold:
        """A bundle reads at most the body prefix; only a pricer is shown the whole
        request (its headers copied into a `RequestView`)."""
        if route.bundle is not None:
            return await self.bundles.hold(route, key, details)
        if self.pricers is None:
            raise RuntimeError(f"route {route.name!r} is metered by a pricer, but none is open")
        return await self.pricers.hold(
            route, key, RequestView(method, path, list(headers), details)
        )

    async def close(self) -> None:
        """Let usage reports in flight reach their pricer (bounded)."""
        if self.pricers is not None:
            await self.pricers.reporter.drain()


async def hold_for(
    *,
    route: Route,
    method: str,
    path: str,
    decoded_path: str,
    headers: Iterable[tuple[str, str]],
    details: RequestDetails | None,
    key: CredentialKey,
    token: VerifiedToken | None,
    quotas: RequestQuotas,
    leases: LeaseKeeper,
    meters: Meters,
) -> Hold | None:
    """The hold of a paid request (see the module docstring); raises a Refusal or L402Error."""
    await quotas.limit(route, decoded_path, key.subject)
    if route.single_use:
        if token is None:
            raise RuntimeError("single-use routes sell L402 tokens")
        return LeaseHold(leases, await leases.take(token, route))
    if route.metered:
        return await meters.hold(route, key, method, path, headers, details)
    return None
