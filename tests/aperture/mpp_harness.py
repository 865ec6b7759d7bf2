"""Aperture v0.5.0 with the Payment scheme on: `authenticator.enablempp` and sessions.

A subclass of the shared `ApertureProcess` (tests/support/aperture.py) that
only adds Aperture's MPP keys to the `authenticator` section, as Aperture
spells them: `enablempp`, `mpprealm`, `enablesessions`,
`sessiondepositmultiplier`, `sessionidletimeout`; a service's scheme is its
`authscheme` (`l402`, `mpp` or `l402+mpp`) in `ApertureService.extra`.

Refunds: Aperture builds its refund sender from `macdir`'s admin.macaroon
(lndclient's default) and pays with lnrpc SendPaymentSync, which lnd
v0.21.2 no longer serves, so every refund it attempts fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.regtest.network import NodeInfo
from tests.support.aperture import ApertureProcess, ApertureService, PostgresBackend

REALM = "aperture.regtest.test"


class MppApertureProcess(ApertureProcess):
    def __init__(
        self,
        binary: Path,
        seller: NodeInfo,
        services: list[ApertureService],
        *,
        sessions: bool = True,
        multiplier: int | None = None,
        idle_timeout: int | None = None,
        realm: str = REALM,
        postgres: PostgresBackend | None = None,
    ) -> None:
        super().__init__(binary, seller, services, postgres=postgres, name="aperture-mpp")
        self.sessions = sessions
        self.multiplier = multiplier
        self.idle_timeout = idle_timeout
        self.realm = realm

    def config(self) -> dict[str, Any]:
        document = super().config()
        auth = document["authenticator"]
        auth["enablempp"] = True
        auth["mpprealm"] = self.realm
        auth["enablesessions"] = self.sessions
        if self.multiplier is not None:
            auth["sessiondepositmultiplier"] = self.multiplier
        if self.idle_timeout is not None:
            auth["sessionidletimeout"] = self.idle_timeout
        return document
