"""The seller's LND client: the calls of the Lightning backend seam, on one lean HTTP/2
connection (gateway.lightning.lnd.h2conn) instead of grpcio.

Why: per challenge, grpcio's asyncio client cost ~300 us of our CPU for one
AddInvoice on the 2-core bench machine (its completion-queue threads and
polling, protobuf objects), a quarter of a challenge; importing grpcio and
LND's generated classes cost each worker ~10 MiB and ~0.2 s at start. Here a
call is: one pre-built header block (plus `grpc-timeout`), one message,
the answer parsed for the fields the seller reads (gateway.lightning.lnd.wire).
The buyer, the regtest tooling and refunds keep grpcio (gateway.lightning.lnd.node).

Like a gRPC channel it connects on first use (`start()` begins at once),
shares one connection between concurrent calls, opens a new one when the old
breaks, and after a failed connect fails calls at once (UNAVAILABLE) for a
growing pause (0.2 s to 2 s) instead of waiting on a node that is down. Every
call has a deadline (the client's `timeout`, sent to LND as `grpc-timeout`);
a stream (`settlements`) has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import TypeVar

from gateway.lightning.backend import Health
from gateway.lightning.errors import BackendError, BackendUnavailable
from gateway.lightning.lnd.h2conn import Call, CallFailed, H2Connection
from gateway.lightning.lnd.macaroonfile import read_macaroon
from gateway.lightning.lnd.status import from_status
from gateway.lightning.lnd.wire import frames, messages
from gateway.lightning.lnd.wire.grpcframe import message, timeout_value
from gateway.lightning.lnd.wire.protobuf import WireError
from gateway.lightning.types import AddedInvoice, Invoice, NodeInfo, WalletState

CallObserver = Callable[[str, float, str | None], None]
_T = TypeVar("_T")

BACKOFF_START = 0.2
BACKOFF_MAX = 2.0
USER_AGENT = "l402-gateway"


def split_host(host: str, default_port: int = 10009) -> tuple[str, int]:
    """("127.0.0.1", 10009) from "127.0.0.1:10009"; IPv6 as "[::1]:10009"."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") else default_port
    name, sep, port = host.rpartition(":")
    if not sep or ":" in name:  # no port, or a bare IPv6 address
        return host, default_port
    return name, int(port)


class TlsSettings:
    """Trust LND's own certificate only, and speak HTTP/2 (ALPN h2, which gRPC requires).

    The context is built on the first connect, so that a certificate file that does not
    parse fails calls (UNAVAILABLE, saying so) rather than the process's start, as a
    gRPC channel does."""

    def __init__(self, cert: bytes) -> None:
        self._cert = cert
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                context = ssl.create_default_context(
                    cadata=self._cert.decode("ascii", errors="replace")
                )
            except (ssl.SSLError, ValueError) as exc:
                raise CallFailed(
                    "UNAVAILABLE",
                    f"certificate verify failed: lightning.tls_cert is not a PEM certificate "
                    f"({type(exc).__name__})",
                ) from None
            context.set_alpn_protocols(["h2"])
            self._context = context
        return self._context


class LndSeller:
    """Implements gateway.lightning.backend.Backend on LND's gRPC API."""

    name = "lnd"

    def __init__(
        self,
        host: str,
        *,
        tls: TlsSettings | None,
        macaroon_hex: str | None,
        timeout: float = 10.0,
        observer: CallObserver | None = None,
    ) -> None:
        self.host, self.port = split_host(host)
        self._tls = tls
        self.timeout = timeout
        self._observer = observer
        self._connection: H2Connection | None = None
        self._connecting: asyncio.Task[H2Connection] | None = None
        self._down_until = 0.0
        self._backoff = BACKOFF_START
        self._last_failure = ""
        authority = f"[{self.host}]" if ":" in self.host else self.host
        fixed = frames.literal(frames.AUTHORITY, f"{authority}:{self.port}")
        fixed += frames.literal(frames.CONTENT_TYPE, "application/grpc")
        fixed += frames.literal("te", "trailers")
        fixed += frames.literal(frames.USER_AGENT, USER_AGENT)
        if macaroon_hex:
            fixed += frames.literal("macaroon", macaroon_hex, sensitive=True)
        scheme = frames.SCHEME_HTTPS if tls is not None else frames.SCHEME_HTTP
        self._head = frames.indexed(frames.METHOD_POST) + frames.indexed(scheme)
        self._fixed = fixed
        self._paths: dict[str, bytes] = {}
        self._may_mint = False  # the invoice permission probe has passed (health)

    @classmethod
    def connect(
        cls,
        host: str,
        *,
        tls_cert: Path | bytes,
        macaroon: Path | str | bytes | None,
        timeout: float = 10.0,
        observer: CallObserver | None = None,
    ) -> LndSeller:
        """A client for `host` trusting only LND's certificate; nothing is dialled here."""
        cert = tls_cert if isinstance(tls_cert, bytes) else Path(tls_cert).read_bytes()
        return cls(
            host,
            tls=TlsSettings(cert),
            macaroon_hex=read_macaroon(macaroon),
            timeout=timeout,
            observer=observer,
        )

    # -- the connection ----------------------------------------------------------------
    def start(self) -> None:
        """Begin connecting now (inside the running loop), so the first call finds it open."""
        if self._connection is None and self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(_retrieve)

    async def _ready_connection(self) -> H2Connection:
        connection = self._connection
        if connection is not None and connection.usable:
            return connection
        if self._connecting is None:
            if time.monotonic() < self._down_until:
                raise CallFailed("UNAVAILABLE", self._last_failure)
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(_retrieve)
        return await asyncio.shield(self._connecting)

    async def _open(self) -> H2Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                tls = self._tls.context() if self._tls is not None else None
                _, connection = await loop.create_connection(
                    H2Connection,
                    self.host,
                    self.port,
                    ssl=tls,
                    server_hostname=self.host if tls is not None else None,
                )
                await connection.ready
        except (OSError, TimeoutError, CallFailed) as exc:
            self._last_failure = _connect_failure(self.host, self.port, exc)
            self._down_until = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
            raise CallFailed("UNAVAILABLE", self._last_failure) from None
        finally:
            self._connecting = None
        self._backoff = BACKOFF_START
        self._connection = connection  # one going away closes itself once its calls end
        return connection

    async def close(self) -> None:
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def __aenter__(self) -> LndSeller:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- calls ---------------------------------------------------------------------------
    def _headers(self, path: str, timeout: float | None) -> bytes:
        block = self._paths.get(path)
        if block is None:
            block = self._paths[path] = self._head + frames.literal(frames.PATH, path)
        block += self._fixed
        if timeout is not None:
            block += frames.literal("grpc-timeout", timeout_value(timeout))
        return block

    async def _open_call(self, path: str, request: bytes, timeout: float | None) -> Call:
        connection = await self._ready_connection()
        return await connection.open_call(self._headers(path, timeout), message(request))

    async def _unary(
        self,
        method: str,
        path: str,
        request: bytes,
        decode: Callable[[bytes], _T],
        timeout: float | None = None,
    ) -> _T:
        start = time.perf_counter()
        code: str | None = None
        limit = timeout or self.timeout
        call: Call | None = None
        try:
            async with asyncio.timeout(limit):
                call = await self._open_call(path, request, limit)
                answer = await call.next_message()
                if answer is None:
                    raise CallFailed("INTERNAL", "the answer carried no message")
                while await call.next_message() is not None:  # up to the trailers
                    pass
            return decode(answer)
        except TimeoutError:
            code = "DEADLINE_EXCEEDED"
            raise BackendUnavailable(method, code, "LND did not answer in time") from None
        except CallFailed as exc:
            error = from_status(method, exc.code, exc.message)
            code = error.code
            raise error from None
        except WireError as exc:
            code = "INTERNAL"
            raise BackendError(method, code, f"unreadable answer: {exc}") from None
        finally:
            if call is not None:
                call.cancel()  # a no-op once the answer ended
            if self._observer is not None:
                self._observer(method, time.perf_counter() - start, code)

    async def add_invoice(
        self,
        value_msat: int,
        memo: str = "",
        expiry: int = 3600,
        private: bool = True,
        *,
        timeout: float | None = None,
    ) -> AddedInvoice:
        request = messages.add_invoice_request(value_msat, memo, expiry, private)
        return await self._unary(
            "AddInvoice", messages.ADD_INVOICE, request, messages.added_invoice, timeout
        )

    async def probe_invoice_permission(self, *, timeout: float | None = None) -> None:
        """An AddInvoice LND must refuse (a negative amount): it checks the macaroon first,
        so PermissionDenied means the macaroon may not mint, anything else that it may.
        Counted under its own method label, never as an AddInvoice."""
        request = messages.add_invoice_request(-1, "permission probe", 60, False)
        await self._unary(
            "AddInvoiceProbe", messages.ADD_INVOICE, request, messages.added_invoice, timeout
        )

    async def lookup_invoice(self, payment_hash: bytes) -> Invoice:
        request = messages.lookup_invoice_request(payment_hash)
        return await self._unary(
            "LookupInvoice", messages.LOOKUP_INVOICE, request, messages.invoice
        )

    async def invoices(
        self,
        after: int = 0,
        limit: int = 100,
        *,
        created_since: int = 0,
        newest_first: bool = False,
    ) -> list[Invoice]:
        request = messages.list_invoices_request(
            after, limit, reversed_order=newest_first, creation_date_start=created_since
        )
        return await self._unary(
            "ListInvoices", messages.LIST_INVOICES, request, messages.invoice_list
        )

    async def settlements(self, after: int = 0) -> AsyncGenerator[Invoice, None]:
        """SubscribeInvoices from settle index `after` (0: live only); no deadline."""
        method = "SubscribeInvoices"
        start = time.perf_counter()
        code: str | None = None
        call: Call | None = None
        try:
            request = messages.subscription_request(0, after)
            async with asyncio.timeout(self.timeout):  # connecting and sending only
                call = await self._open_call(messages.SUBSCRIBE_INVOICES, request, None)
            while (raw := await call.next_message()) is not None:
                yield messages.invoice(raw)
            code = "STREAM_ENDED"
        except TimeoutError:
            code = "DEADLINE_EXCEEDED"
            raise BackendUnavailable(method, code, "could not open the stream in time") from None
        except CallFailed as exc:
            error = from_status(method, exc.code, exc.message)
            code = error.code
            raise error from None
        except WireError as exc:
            code = "INTERNAL"
            raise BackendError(method, code, f"unreadable event: {exc}") from None
        finally:
            if call is not None:
                call.cancel()
            if self._observer is not None:
                self._observer(method, time.perf_counter() - start, code)

    async def node_info(self) -> NodeInfo:
        return await self.get_info()

    async def get_info(self, *, timeout: float | None = None) -> NodeInfo:
        return await self._unary("GetInfo", messages.GET_INFO, b"", messages.node_info, timeout)

    async def get_state(self, *, timeout: float | None = None) -> WalletState:
        return await self._unary(
            "GetState", messages.GET_STATE, b"", messages.wallet_state, timeout
        )

    async def health(self, timeout: float) -> Health:
        """Ready once the wallet is unlocked and the macaroon may mint invoices; otherwise
        why not, in LND's words with the likely cause (gateway.lightning.lnd.diagnose).
        The permission probe runs until it passes once; then only GetState is asked."""
        from gateway.lightning.lnd.diagnose import node_health

        health = await node_health(self, timeout, may_mint=self._may_mint)
        self._may_mint = self._may_mint or health.ready
        return health


def _retrieve(task: asyncio.Task[H2Connection]) -> None:
    """A connect nobody waits for any more must not log "exception never retrieved"."""
    if not task.cancelled():
        task.exception()


def _connect_failure(host: str, port: int, exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no connection to {host}:{port} in time"
    if isinstance(exc, ssl.SSLCertVerificationError):  # the words diagnose.py recognises
        return f"TLS with {host}:{port} failed: certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {host}:{port} failed: {exc.reason or exc}"
    if isinstance(exc, CallFailed):
        return exc.message
    number = getattr(exc, "errno", None)  # asyncio words a refusal "Connect call failed"
    reason = os.strerror(number) if isinstance(number, int) else str(exc)
    return f"cannot connect to {host}:{port}: {reason}"
