"""The Lightning backend operator commands open (prune, reconcile): files checked first."""

from __future__ import annotations

from gateway.commands.loading import CommandError
from gateway.config import GatewayConfig
from gateway.lightning.backend import Backend
from gateway.lightning.factory import open_backend


def connect_backend(config: GatewayConfig) -> Backend:
    """Open the config's Lightning backend; a missing cert or macaroon is one line."""
    section = config.lightning
    for field, path in (("tls_cert", section.tls_cert), ("macaroon", section.macaroon)):
        if not path.is_file():
            raise CommandError(
                f"{config.source}: {section.section}.{field}: file not found: {path}"
            )
    return open_backend(section)
