"""Prune token rows whose invoice expired unpaid, so crawler traffic cannot grow the store.

Every 402 challenge stores a token row before anyone pays. A paid credential
must never be lost, so a row goes only when all of these hold:

(a) it was created more than `older_than` ago (the store does not know each
    route's invoice expiry, so the age is a conservative grace period);
(b) no settlement is booked for its payment hash;
(c) it was never used or leased (either means a valid preimage was shown);
(d) LND says its invoice is CANCELED (LND cancels expired unpaid invoices itself).

The store re-checks (b) and (c) inside the delete, so a settlement booked after
the candidates were read wins. `NotFound` keeps the row: it cannot tell an
invoice LND deleted after canceling it from a gateway pointed at another or a
restored node, where the invoice may well have been paid. Any other LND error
keeps the row and ends the round. Rounds are bounded (`batch` rows), and the
scan pages past kept rows so they never block the rows behind them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.lightning import BackendError, InvoiceState, NotFound
from gateway.lightning.backend import Backend
from gateway.observability.metrics import GatewayMetrics
from gateway.store.roles import PruneStore
from gateway.store.types import StoreError

log = logging.getLogger("gateway.pruning")

DAY_SECONDS = 86_400
DEFAULT_OLDER_THAN_DAYS = 7
DEFAULT_BATCH = 500
FIRST_PASS_DELAY = 300.0  # never at start-up: let the gateway settle in first
PASS_INTERVAL = 3600.0
ROUND_PAUSE = 1.0  # between the rounds of one pass, to spread LND and store load


@dataclass(frozen=True)
class PruneResult:
    """One round: `checked` = `deleted` + `kept` (dry runs count would-be deletions)."""

    checked: int
    deleted: int
    kept: int
    not_found: int = 0  # kept because LND does not know the invoice
    finished: bool = True  # the scan reached the newest candidate; the next round restarts
    error: str | None = None  # LND error code that ended the round early

    def __add__(self, other: PruneResult) -> PruneResult:
        return PruneResult(
            self.checked + other.checked,
            self.deleted + other.deleted,
            self.kept + other.kept,
            self.not_found + other.not_found,
            other.finished,
            other.error,
        )


class TokenPruner:
    """Deletes rows of invoices LND canceled; several gateways may prune one store at once."""

    def __init__(
        self,
        lnd: Backend,
        store: PruneStore,
        metrics: GatewayMetrics,
        older_than_seconds: int = DEFAULT_OLDER_THAN_DAYS * DAY_SECONDS,
        batch: int = DEFAULT_BATCH,
        *,
        dry_run: bool = False,
    ) -> None:
        if older_than_seconds < 1:
            raise ValueError("older_than_seconds must be >= 1")
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self._lnd = lnd
        self._store = store
        self._metrics = metrics
        self._older_than = older_than_seconds
        self._batch = batch
        self._dry_run = dry_run
        self._cursor: tuple[int, bytes] | None = None  # (created_at, key_id) of the last row seen
        self.pass_done = asyncio.Event()  # set after each background pass (tests wait on it)
        self.last_pass: PruneResult | None = None

    async def prune_once(self, now: int) -> PruneResult:
        """Check up to `batch` candidates with LND and delete those LND canceled."""
        candidates = await self._store.prune_candidates(
            now - self._older_than, self._batch, after=self._cursor
        )
        canceled: list[bytes] = []
        checked = not_found = 0
        error: str | None = None
        for candidate in candidates:
            checked += 1
            try:
                invoice = await self._lnd.lookup_invoice(candidate.payment_hash)
            except NotFound:
                not_found += 1
                continue
            except BackendError as exc:
                error = exc.code  # keep this row and everything after it
                break
            if invoice.state is InvoiceState.CANCELED:
                canceled.append(candidate.key_id)
        if self._dry_run:
            deleted = len(canceled)
        else:
            deleted = await self._store.delete_tokens(canceled)
            self._metrics.tokens_pruned.inc(deleted)
        finished = error is None and len(candidates) < self._batch
        if error is None:  # after an error the next round retries this batch
            last = candidates[-1] if candidates and not finished else None
            self._cursor = None if last is None else (last.created_at, last.key_id)
        return PruneResult(checked, deleted, checked - deleted, not_found, finished, error)

    async def prune_pass(self, now: int, *, pause: float = 0.0) -> PruneResult:
        """Rounds until the scan is finished or LND fails; the totals."""
        total = await self.prune_once(now)
        while not total.finished and total.error is None:
            await asyncio.sleep(pause)
            total += await self.prune_once(now)
        return total

    async def run(
        self,
        clock: Callable[[], float] = time.time,
        *,
        first_delay: float = FIRST_PASS_DELAY,
        interval: float = PASS_INTERVAL,
    ) -> None:
        """A pass `first_delay` after start, then one every `interval`, until cancelled."""
        await asyncio.sleep(first_delay)
        while True:
            try:
                result = await self.prune_pass(int(clock()), pause=ROUND_PAUSE)
            except StoreError as exc:
                log.warning(
                    "token pruning failed: %s", exc, extra={"error": str(exc)}
                )  # secret-free by contract
            except Exception:
                # Pruning is housekeeping: it must never take the gateway down.
                log.exception("token pruning failed")
            else:
                self._report(result)
                self.last_pass = result
                self.pass_done.set()
            await asyncio.sleep(interval)

    def _report(self, result: PruneResult) -> None:
        message = (
            f"token pruning: checked {result.checked}, deleted {result.deleted},"
            f" kept {result.kept} ({result.not_found} unknown to LND)"
        )
        if result.error is None:
            log.info(message)
        else:
            log.warning(message + "; stopped on an LND error", extra={"lnd_code": result.error})
