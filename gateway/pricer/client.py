"""Aperture's pricer protocol (pricesrpc.Prices) over grpc.aio: deadlines, typed errors.

`Pricer` is the role the request path depends on; `GrpcPricer` speaks it to
a pricer such as Aperture's meterd: one channel per pricer, a deadline on
every call, plaintext (as Aperture's `dynamicprice.insecure`) or TLS trusting
the pricer's own certificate. Only this module knows about protobuf.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import grpc

from gateway.pricer.errors import (
    PricerError,
    PricerInvalidAnswer,
    PricerRefused,
    PricerUnavailable,
)
from gateway.pricer.rpc import prices_pb2, prices_pb2_grpc
from gateway.pricer.types import Authorization, UsageDebit, UsageReport
from gateway.pricer.wire import PricedRequest

_UNAVAILABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_REFUSED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.UNIMPLEMENTED,
}
MAX_DETAILS = 200


def from_rpc_error(method: str, error: grpc.aio.AioRpcError) -> PricerError:
    code = error.code()
    details = (error.details() or "")[:MAX_DETAILS]
    kind: type[PricerError] = PricerError
    if code in _UNAVAILABLE:
        kind = PricerUnavailable
    elif code in _REFUSED:
        kind = PricerRefused
    return kind(method, code.name, details)


DEFAULT_TIMEOUT = 2.0
REPORT_TIMEOUT = 10.0  # a usage report carries the tail, and is not on the buyer's clock
_MAX_MESSAGE = 4 * 1024 * 1024  # a tail is at most 1 MiB, a request text 64 KiB past its head
_TOKEN_HEX = frozenset("0123456789abcdef")

# Called after every call: (method, seconds, error code or None); for metrics.
CallObserver = Callable[[str, float, str | None], None]


class Pricer(Protocol):
    async def get_price(self, request: PricedRequest) -> int:
        """The price in satoshis of what a 402 for this request sells (0 = free)."""
        ...

    async def challenge_minted(
        self, request: PricedRequest, token_id: str, service_name: str, price_sats: int
    ) -> None: ...

    async def authorize_request(
        self, request: PricedRequest, token_id: str, service_name: str
    ) -> Authorization: ...

    async def report_usage(self, report: UsageReport) -> UsageDebit: ...

    async def close(self) -> None: ...


def _check_token_id(token_id: str) -> str:
    if len(token_id) != 64 or not set(token_id) <= _TOKEN_HEX:
        raise ValueError("token_id must be 64 lower-case hex characters")
    return token_id


def _non_negative(method: str, name: str, value: int) -> int:
    if value < 0:
        raise PricerInvalidAnswer(method, "invalid_answer", f"negative {name}")
    return int(value)


class GrpcPricer:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        report_timeout: float = REPORT_TIMEOUT,
        observer: CallObserver | None = None,
    ) -> None:
        self._channel = channel
        self._stub = prices_pb2_grpc.PricesStub(channel)
        self.timeout = timeout
        self.report_timeout = report_timeout
        self._observer = observer

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        tls_cert: Path | bytes | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        report_timeout: float = REPORT_TIMEOUT,
        observer: CallObserver | None = None,
    ) -> GrpcPricer:
        """A channel to `address` ("127.0.0.1:10010"): TLS trusting `tls_cert`, else plaintext."""
        options = [
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2_000),
        ]
        if tls_cert is None:
            channel = grpc.aio.insecure_channel(address, options=options)
        else:
            cert = tls_cert if isinstance(tls_cert, bytes) else Path(tls_cert).read_bytes()
            credentials = grpc.ssl_channel_credentials(root_certificates=cert)
            channel = grpc.aio.secure_channel(address, credentials, options=options)
        return cls(channel, timeout=timeout, report_timeout=report_timeout, observer=observer)

    async def close(self) -> None:
        await self._channel.close()

    async def wait_ready(self, timeout: float) -> None:
        """Connect now (start-up checks, tests); PricerUnavailable if not within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                await self._channel.channel_ready()
        except TimeoutError:
            raise PricerUnavailable(
                "connect", "UNAVAILABLE", f"no connection within {timeout:g}s"
            ) from None

    async def __aenter__(self) -> GrpcPricer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _call(self, method: str, request: Any, timeout: float) -> Any:
        start = time.perf_counter()
        code: str | None = None
        try:
            return await getattr(self._stub, method)(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            error: PricerError = from_rpc_error(method, exc)
            code = error.code
            raise error from None
        finally:
            if self._observer is not None:
                self._observer(method, time.perf_counter() - start, code)

    async def get_price(self, request: PricedRequest) -> int:
        answer = await self._call(
            "GetPrice",
            prices_pb2.GetPriceRequest(path=request.path, http_request_text=request.text),
            self.timeout,
        )
        return _non_negative("GetPrice", "price", answer.price_sats)

    async def challenge_minted(
        self, request: PricedRequest, token_id: str, service_name: str, price_sats: int
    ) -> None:
        if price_sats < 1:
            raise ValueError("a minted challenge has a price of at least 1 sat")
        await self._call(
            "ChallengeMinted",
            prices_pb2.ChallengeMintedRequest(
                path=request.path,
                http_request_text=request.text,
                token_id=_check_token_id(token_id),
                price_sats=price_sats,
                service_name=service_name,
            ),
            self.timeout,
        )

    async def authorize_request(
        self, request: PricedRequest, token_id: str, service_name: str
    ) -> Authorization:
        answer = await self._call(
            "AuthorizeRequest",
            prices_pb2.AuthorizeRequestRequest(
                path=request.path,
                http_request_text=request.text,
                token_id=_check_token_id(token_id),
                service_name=service_name,
            ),
            self.timeout,
        )
        return Authorization(
            allowed=bool(answer.allowed),
            price_sats=_non_negative("AuthorizeRequest", "price", answer.price_sats),
            reason=str(answer.reason)[:200],
            reserved_estimate=_non_negative(
                "AuthorizeRequest", "reserved estimate", answer.reserved_estimate
            ),
        )

    async def report_usage(self, report: UsageReport) -> UsageDebit:
        answer = await self._call(
            "ReportUsage",
            prices_pb2.ReportUsageRequest(
                token_id=_check_token_id(report.token_id),
                path=report.path,
                service_name=report.service_name,
                http_status=report.http_status,
                content_type=report.content_type,
                complete=report.complete,
                response_tail=report.response_tail,
                content_encoding=report.content_encoding,
                reserved_estimate=report.reserved_estimate,
            ),
            self.report_timeout,
        )
        return UsageDebit(
            debited_sats=_non_negative("ReportUsage", "debit", answer.debited_sats),
            remaining_sats=_non_negative("ReportUsage", "remaining", answer.remaining_sats),
        )
