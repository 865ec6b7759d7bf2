"""Async LND client on grpc.aio: one TLS channel per client, per-call deadlines, typed results.

Only this module (and the generated stubs) knows about protobuf; callers get the
dataclasses of `gateway.lightning.types` and the exceptions of `errors`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from gateway.lightning.backend import Health
from gateway.lightning.errors import BackendError, BackendUnavailable, PaymentFailed
from gateway.lightning.lnd.macaroonfile import read_macaroon
from gateway.lightning.lnd.rpc import (
    lightning_pb2,
    lightning_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
    state_pb2,
    state_pb2_grpc,
)
from gateway.lightning.lnd.status import from_rpc_error
from gateway.lightning.types import (
    AddedInvoice,
    Invoice,
    InvoiceState,
    NodeInfo,
    Payment,
    PayReq,
    WalletState,
)

# Called after every unary call and stream start: (method, seconds, error code or None).
CallObserver = Callable[[str, float, str | None], None]

_MAX_MESSAGE = 64 * 1024 * 1024  # list calls exceed gRPC's 4 MiB default on busy nodes
_T = TypeVar("_T")


class LndClient:
    """A connection to one LND node; cheap calls, one channel, closed with `close()`.

    Implements gateway.lightning.backend.Backend (the seller's calls) and
    RefundPayer; the LND-shaped calls (list_invoices, subscribe_invoices,
    get_state, decode_pay_req) serve the buyer, the regtest tooling and tests.
    """

    name = "lnd"

    def __init__(
        self,
        channel: grpc.aio.Channel,
        macaroon_hex: str | None,
        *,
        timeout: float = 10.0,
        observer: CallObserver | None = None,
    ) -> None:
        self._channel = channel
        self._metadata: tuple[tuple[str, str], ...] = (
            (("macaroon", macaroon_hex),) if macaroon_hex else ()
        )
        self.timeout = timeout
        self._observer = observer
        self._may_mint = False  # the invoice permission probe has passed (health)
        self._lightning = lightning_pb2_grpc.LightningStub(channel)
        self._router = router_pb2_grpc.RouterStub(channel)
        self._state = state_pb2_grpc.StateStub(channel)

    @classmethod
    def connect(
        cls,
        host: str,
        *,
        tls_cert: Path | bytes,
        macaroon: Path | str | bytes | None,
        timeout: float = 10.0,
        observer: CallObserver | None = None,
    ) -> LndClient:
        """Open a TLS channel to `host` ("127.0.0.1:10009") trusting only LND's own cert."""
        cert = tls_cert if isinstance(tls_cert, bytes) else Path(tls_cert).read_bytes()
        credentials = grpc.ssl_channel_credentials(root_certificates=cert)
        channel = grpc.aio.secure_channel(
            host,
            credentials,
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                # Reconnect quickly after an LND restart instead of backing off for minutes.
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2_000),
            ],
        )
        return cls(channel, read_macaroon(macaroon), timeout=timeout, observer=observer)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> LndClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _unary(self, method: str, call: Any, request: Any, timeout: float | None) -> Any:
        start = time.perf_counter()
        code: str | None = None
        try:
            return await call(request, metadata=self._metadata, timeout=timeout or self.timeout)
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(method, exc)
            code = error.code
            raise error from None
        finally:
            if self._observer is not None:
                self._observer(method, time.perf_counter() - start, code)

    # Seller calls -----------------------------------------------------------------

    async def get_info(self, *, timeout: float | None = None) -> NodeInfo:
        r = await self._unary(
            "GetInfo", self._lightning.GetInfo, lightning_pb2.GetInfoRequest(), timeout
        )
        return NodeInfo(
            pubkey=r.identity_pubkey,
            alias=r.alias,
            block_height=r.block_height,
            synced_to_chain=r.synced_to_chain,
            version=r.version,
            num_active_channels=r.num_active_channels,
            num_peers=r.num_peers,
        )

    async def get_state(self, *, timeout: float | None = None) -> WalletState:
        r = await self._unary(
            "GetState", self._state.GetState, state_pb2.GetStateRequest(), timeout
        )
        return WalletState(r.state)

    async def add_invoice(
        self,
        value_msat: int,
        memo: str = "",
        expiry: int = 3600,
        private: bool = True,
        *,
        timeout: float | None = None,
    ) -> AddedInvoice:
        request = lightning_pb2.Invoice(
            value_msat=value_msat, memo=memo, expiry=expiry, private=private
        )
        r = await self._unary("AddInvoice", self._lightning.AddInvoice, request, timeout)
        return AddedInvoice(
            payment_hash=bytes(r.r_hash),
            payment_request=r.payment_request,
            add_index=r.add_index,
            payment_addr=bytes(r.payment_addr),
        )

    async def probe_invoice_permission(self, *, timeout: float | None = None) -> None:
        """An AddInvoice LND must refuse (a negative amount): it checks the macaroon first,
        so PermissionDenied means the macaroon may not mint, anything else that it may.
        Counted under its own method label, never as an AddInvoice."""
        request = lightning_pb2.Invoice(value_msat=-1, memo="permission probe", expiry=60)
        await self._unary("AddInvoiceProbe", self._lightning.AddInvoice, request, timeout)

    async def lookup_invoice(self, payment_hash: bytes, *, timeout: float | None = None) -> Invoice:
        request = lightning_pb2.PaymentHash(r_hash=payment_hash)
        r = await self._unary("LookupInvoice", self._lightning.LookupInvoice, request, timeout)
        return _invoice(r)

    async def list_invoices(
        self,
        index_offset: int = 0,
        num_max: int = 100,
        *,
        pending_only: bool = False,
        reversed_order: bool = False,
        creation_date_start: int = 0,
        timeout: float | None = None,
    ) -> list[Invoice]:
        """One page of invoices; `creation_date_start` (unix s) skips older history."""
        request = lightning_pb2.ListInvoiceRequest(
            index_offset=index_offset,
            num_max_invoices=num_max,
            pending_only=pending_only,
            reversed=reversed_order,
            creation_date_start=creation_date_start,
        )
        r = await self._unary("ListInvoices", self._lightning.ListInvoices, request, timeout)
        return [_invoice(i) for i in r.invoices]

    async def subscribe_invoices(
        self, add_index: int = 0, settle_index: int = 0
    ) -> AsyncIterator[Invoice]:
        """Invoice updates after the given indexes, then live; runs until cancelled or LND drops."""
        request = lightning_pb2.InvoiceSubscription(add_index=add_index, settle_index=settle_index)
        stream = self._lightning.SubscribeInvoices(request, metadata=self._metadata)
        start = time.perf_counter()
        code: str | None = None
        try:
            async for message in stream:
                yield _invoice(message)
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error("SubscribeInvoices", exc)
            code = error.code
            raise error from None
        finally:
            stream.cancel()
            if self._observer is not None:
                self._observer("SubscribeInvoices", time.perf_counter() - start, code)

    # The Backend seam (gateway.lightning.backend) -------------------------------------

    async def invoices(
        self,
        after: int = 0,
        limit: int = 100,
        *,
        created_since: int = 0,
        newest_first: bool = False,
    ) -> list[Invoice]:
        return await self.list_invoices(
            index_offset=after,
            num_max=limit,
            creation_date_start=created_since,
            reversed_order=newest_first,
        )

    def settlements(self, after: int = 0) -> AsyncIterator[Invoice]:
        # LND replays settlements above settle_index; 0 means "no backlog".
        return self.subscribe_invoices(settle_index=after)

    async def node_info(self) -> NodeInfo:
        return await self.get_info()

    async def health(self, timeout: float) -> Health:
        """Ready once the wallet is unlocked and the macaroon may mint invoices; otherwise
        why not, in LND's words with the likely cause (gateway.lightning.lnd.diagnose).
        The permission probe runs until it passes once; then only GetState is asked."""
        from gateway.lightning.lnd.diagnose import node_health

        health = await node_health(self, timeout, may_mint=self._may_mint)
        self._may_mint = self._may_mint or health.ready
        return health

    # Buyer calls ------------------------------------------------------------------

    async def decode_pay_req(self, bolt11: str, *, timeout: float | None = None) -> PayReq:
        request = lightning_pb2.PayReqString(pay_req=bolt11)
        r = await self._unary("DecodePayReq", self._lightning.DecodePayReq, request, timeout)
        return PayReq(
            destination=r.destination,
            payment_hash=bytes.fromhex(r.payment_hash),
            num_msat=r.num_msat,
            timestamp=r.timestamp,
            expiry=r.expiry,
            description=r.description,
            num_route_hints=len(r.route_hints),
        )

    async def pay_invoice(
        self,
        bolt11: str,
        *,
        fee_limit_msat: int,
        timeout_seconds: int = 60,
        amount_msat: int | None = None,
    ) -> Payment:
        """Pay with SendPaymentV2 and wait for the final state; FAILED raises PaymentFailed.

        `amount_msat` pays an invoice that names no amount (a session's return invoice).
        LND pays one payment hash at most once: a second call for a paid invoice fails.
        """
        request = router_pb2.SendPaymentRequest(
            payment_request=bolt11,
            fee_limit_msat=fee_limit_msat,
            timeout_seconds=timeout_seconds,
            no_inflight_updates=True,
            amt_msat=amount_msat or 0,
        )
        start = time.perf_counter()
        code: str | None = None
        stream = self._router.SendPaymentV2(
            request, metadata=self._metadata, timeout=timeout_seconds + self.timeout
        )
        try:
            async for update in stream:
                status = update.status
                if status == lightning_pb2.Payment.SUCCEEDED:
                    return Payment(
                        payment_hash=bytes.fromhex(update.payment_hash),
                        preimage=bytes.fromhex(update.payment_preimage),
                        value_msat=update.value_msat,
                        fee_msat=update.fee_msat,
                    )
                if status == lightning_pb2.Payment.FAILED:
                    reason = lightning_pb2.PaymentFailureReason.Name(update.failure_reason)
                    code = reason
                    raise PaymentFailed("SendPaymentV2", reason, update.payment_hash)
            code = "STREAM_ENDED"
            raise BackendUnavailable("SendPaymentV2", code, "payment stream ended without a result")
        except grpc.aio.AioRpcError as exc:
            error: BackendError = from_rpc_error("SendPaymentV2", exc)
            code = error.code
            raise error from None
        finally:
            stream.cancel()
            if self._observer is not None:
                self._observer("SendPaymentV2", time.perf_counter() - start, code)


def _invoice(r: Any) -> Invoice:
    return Invoice(
        payment_hash=bytes(r.r_hash),
        memo=r.memo,
        value_msat=r.value_msat,
        amt_paid_msat=r.amt_paid_msat,
        state=InvoiceState(r.state),
        add_index=r.add_index,
        settle_index=r.settle_index,
        creation_date=r.creation_date,
        settle_date=r.settle_date,
        expiry=r.expiry,
        private=r.private,
        num_route_hints=len(r.route_hints),
        payment_request=r.payment_request,
    )
