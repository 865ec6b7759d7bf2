"""Open the configured Lightning backend: the one place that knows which backends exist."""

from __future__ import annotations

from collections.abc import Callable

from gateway.config.model import LightningConfig, LndConfig
from gateway.lightning.backend import Backend, RefundPayer

# (method, seconds, error code or None) after every call: feeds the metrics.
CallObserver = Callable[[str, float, str | None], None]


def open_backend(config: LightningConfig, observer: CallObserver | None = None) -> Backend:
    """A connected backend (channels open lazily: nothing is dialled here)."""
    if isinstance(config, LndConfig):
        from gateway.lightning.lnd.seller import LndSeller

        return LndSeller.connect(
            config.host,
            tls_cert=config.tls_cert,
            macaroon=config.macaroon,
            timeout=config.timeout_seconds,
            observer=observer,
        )
    raise ValueError(f"unknown Lightning backend {config!r}")


def open_refund_payer(
    config: LightningConfig, observer: CallObserver | None = None
) -> RefundPayer | None:
    """The refund payer, when the config names its own credential (None: refunds off)."""
    if isinstance(config, LndConfig):
        if config.refund_macaroon is None:
            return None
        from gateway.lightning.lnd.node import LndClient  # grpc loads only when needed

        return LndClient.connect(
            config.host,
            tls_cert=config.tls_cert,
            macaroon=config.refund_macaroon,
            timeout=config.timeout_seconds,
            observer=observer,
        )
    raise ValueError(f"unknown Lightning backend {config!r}")
