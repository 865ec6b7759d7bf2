"""Single-use tokens: take a lease before proxying, then consume or give it back.

A paid credential is never burned by a failure on our side: the token is
consumed only once the buyer was served (gateway.paywall.sale decides: an
upstream answer below 500); an upstream failure, a 5xx, a timeout or a client
that disconnects before the answer starts gives the lease back. Commit and
release name the lease this request took, so a request that outlived its
lease cannot consume or free a lease another request now holds.

The public listener runs with aiohttp's `handler_cancellation` on (a client
that disconnects cancels its handler), so the store calls here are shielded:
a cancelled request still finishes its commit or release, and a reservation
that completes after its request was cancelled is released at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config.model import Route
from gateway.l402.errors import L402Error, Reason
from gateway.l402.verify import VerifiedToken
from gateway.observability.metrics import GatewayMetrics
from gateway.paywall.refusals import LeaseLost, StoreUnavailable
from gateway.store.roles import Leases
from gateway.store.types import Reservation, ReserveResult, StoreError

log = logging.getLogger("gateway.leases")


@dataclass(frozen=True, slots=True)
class Lease:
    """The single-use reservation one request holds."""

    key_id: bytes
    lease_id: bytes
    route: str


class LeaseKeeper:
    def __init__(self, leases: Leases, metrics: GatewayMetrics, clock: Callable[[], float]) -> None:
        self._leases = leases
        self._metrics = metrics
        self._clock = clock
        self._background: set[asyncio.Task[object]] = set()

    async def take(self, token: VerifiedToken, route: Route) -> Lease:
        """Lease the token for `route.lease_seconds`; exactly one concurrent request gets it.

        Raises L402Error (in_use, already_used, revoked) or StoreUnavailable.
        """
        return await self.take_key(token.key_id, route)

    async def take_key(self, key_id: bytes, route: Route) -> Lease:
        """`take` for any single-use row by its key id (a Payment charge's: its payment hash)."""
        reserving = asyncio.ensure_future(
            self._leases.reserve(key_id, int(self._clock()), route.lease_seconds)
        )
        try:
            reservation = await asyncio.shield(reserving)
        except asyncio.CancelledError:
            reserving.add_done_callback(lambda done: self._release_orphan(done, key_id))
            raise
        except StoreError as exc:
            raise StoreUnavailable(f"token store unavailable: {exc}") from exc
        return self._lease_or_refusal(reservation, key_id, route)

    @staticmethod
    def _lease_or_refusal(reservation: Reservation, key_id: bytes, route: Route) -> Lease:
        result, lease_id = reservation
        if result is ReserveResult.RESERVED:
            if lease_id is None:  # the store broke its contract: never commit or release blindly
                raise StoreUnavailable("token store reserved without a lease id")
            return Lease(key_id, lease_id, route.name)
        if result is ReserveResult.IN_USE:
            raise L402Error(Reason.IN_USE, "token is in use by another request")
        if result is ReserveResult.ALREADY_USED:
            raise L402Error(Reason.ALREADY_USED, "single-use token already used")
        raise L402Error(Reason.REVOKED, "unknown or revoked token")

    def _release_orphan(self, done: asyncio.Future[Reservation], key_id: bytes) -> None:
        """A reservation finished after its request was cancelled: give it straight back."""
        if done.cancelled() or done.exception() is not None:
            return
        result, lease_id = done.result()
        if result is ReserveResult.RESERVED and lease_id is not None:
            task: asyncio.Task[object] = asyncio.ensure_future(
                self._quiet_release(Lease(key_id, lease_id, ""))
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def commit(self, lease: Lease) -> str | None:
        """The buyer was served: consume the token.

        Returns a secret-free note for the access log when the store failed (the
        buyer is served; the token is not consumed and the lease lapses). Raises
        LeaseLost when another request holds the token now: this request's lease
        lapsed, so it must not be answered as paid.
        """
        committing = asyncio.ensure_future(
            self._leases.commit(lease.key_id, lease.lease_id, int(self._clock()))
        )
        try:
            committed = await asyncio.shield(committing)
        except StoreError:
            # The buyer still gets the answer it paid for; the lease lapses and the
            # token becomes usable once more rather than being burned by our failure.
            log.warning("could not mark a single-use token used", extra={"route": lease.route})
            return "single-use commit failed; the lease will lapse"
        if not committed:
            # Cannot happen within the lease (the upload and the upstream's answer both
            # have deadlines inside it) unless the store stalled past the margin.
            log.warning("single-use token lease lost before commit", extra={"route": lease.route})
            raise LeaseLost()
        self._metrics.tokens_consumed.labels(route=lease.route).inc()
        return None

    async def release(self, lease: Lease) -> None:
        """Give the token back (only our own lease). Finishes even if the request is cancelled."""
        await asyncio.shield(self._quiet_release(lease))

    async def _quiet_release(self, lease: Lease) -> None:
        # If this fails the lease expires on its own and the token becomes usable again.
        with contextlib.suppress(StoreError):
            await self._leases.release(lease.key_id, lease.lease_id)
