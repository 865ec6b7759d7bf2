"""Open everything a seller needs, run it, close it: one lifecycle for the proxy and embedding.

`running_seller` opens the store and the Lightning backend (or uses injected
ones, left to their owner to close), builds the paywall's `Services`, and runs
what goes beside serving: the paid-request counter's flusher and, once per
store across processes, the settlement follower and the pruner
(gateway.jobs). The proxy enters it from an aiohttp cleanup context, the
embedded middleware from its frameworks' lifespans.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from gateway.config.model import GatewayConfig
from gateway.jobs.runner import running, store_jobs
from gateway.jobs.sessions import SessionJanitor
from gateway.lightning.backend import Backend
from gateway.lightning.factory import open_backend, open_refund_payer
from gateway.observability.metrics import GatewayMetrics, backend_observer
from gateway.payment.verify import Binding
from gateway.paywall.services import PaymentParts, Services, build_services
from gateway.paywall.usage import run_flusher
from gateway.pricer.ondemand import OnDemandPricer
from gateway.store import open_store
from gateway.store.roles import Store
from gateway.store.types import StoreError

log = logging.getLogger("gateway.seller")

# The store's name of the Payment scheme's challenge-id HMAC key (shared by every worker).
PAYMENT_SECRET_NAME = "payment-challenge-hmac-v1"  # noqa: S105 (a name, not a secret)


@dataclass(frozen=True)
class OpenSeller:
    store: Store
    backend: Backend
    services: Services
    jobs: tuple[str, ...]  # the background jobs running ("settlement", "pruner")


@asynccontextmanager
async def running_seller(
    config: GatewayConfig,
    metrics: GatewayMetrics,
    *,
    store: Store | None = None,
    backend: Backend | None = None,
    follow_settlements: bool = True,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[OpenSeller]:
    """Raises what opening raised (StoreError, OSError for an unreadable TLS cert, ...),
    with everything opened so far closed again."""
    async with AsyncExitStack() as stack:
        if store is None:
            store = await open_store(
                config.store.url, config.base_dir, timeout=config.store.timeout_seconds
            )
            stack.push_async_callback(store.close)
        if backend is None:
            backend = open_backend(config.lightning, backend_observer(metrics))
            stack.push_async_callback(backend.close)
        pricer = OnDemandPricer(metrics)
        stack.push_async_callback(pricer.close)
        refunds = open_refund_payer(config.lightning, backend_observer(metrics))
        if refunds is not None:
            stack.push_async_callback(refunds.close)
        secret = await _payment_secret(store)
        parts = PaymentParts(Binding(config.payment.realm, secret), refunds)
        services = build_services(config, store, backend, metrics, clock, pricer, parts)
        await stack.enter_async_context(asynccontextmanager(run_flusher)(services.usage, store))
        janitor = None
        if services.payment is not None and config.payment.sessions.enabled:
            janitor = SessionJanitor(
                store,
                services.payment.closer,
                services.payment.refunds,
                config.payment.sessions,
                metrics,
                clock,
            )
        jobs = store_jobs(
            store,
            backend,
            metrics,
            follow_settlements=follow_settlements,
            prune_after_days=config.store.prune_after_days,
            clock=clock,
            sessions=janitor,
        )
        names = await stack.enter_async_context(running(jobs))
        yield OpenSeller(store, backend, services, names)


async def _payment_secret(store: Store) -> bytes:
    """The Payment scheme's challenge-id key, shared by every process through the store.

    A store that cannot create it (read-only) gets a key of this process's
    own, logged: it can mint nothing then anyway (challenges are stored).
    """
    candidate = os.urandom(32)
    try:
        return await store.server_secret(PAYMENT_SECRET_NAME, candidate)
    except StoreError as exc:
        log.warning(
            "the Payment scheme's shared secret is unavailable; using this process's own",
            extra={"error": str(exc)},
        )
        return candidate
