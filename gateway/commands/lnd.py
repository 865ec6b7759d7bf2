"""The LND client operator commands open (prune, reconcile): files checked first."""

from __future__ import annotations

from gateway.commands.loading import CommandError
from gateway.config import GatewayConfig
from gateway.lightning import LndClient


def connect_lnd(config: GatewayConfig) -> LndClient:
    """Connect with the config's `lnd` section; a missing cert or macaroon is one line."""
    for field, path in (
        ("lnd.tls_cert", config.lnd.tls_cert),
        ("lnd.macaroon", config.lnd.macaroon),
    ):
        if not path.is_file():
            raise CommandError(f"{config.source}: {field}: file not found: {path}")
    return LndClient.connect(
        config.lnd.host,
        tls_cert=config.lnd.tls_cert,
        macaroon=config.lnd.macaroon,
        timeout=config.lnd.timeout_seconds,
    )
