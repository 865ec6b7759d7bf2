"""The real Aperture with its admin API on (tests that revoke a token the way operators do).

Its own module, not conftest.py: test modules import the class by name, and
pytest may import conftest.py under a second module name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.aperture import ApertureProcess


class AdminAperture(ApertureProcess):
    """Aperture with its admin API on (REST under /api/admin/, an admin macaroon in its dir).

    With the admin API on, Aperture also follows settlements (state 'settled' in
    l402_transactions), which its RevokeToken requires.
    """

    @property
    def admin_macaroon(self) -> Path:
        return self.dir / "admin.macaroon"

    def config(self) -> dict[str, Any]:
        document = super().config()
        # macaroonpath: by default Aperture writes it under ~/.aperture, whatever basedir says.
        document["admin"] = {"enabled": True, "macaroonpath": str(self.admin_macaroon)}
        return document

    def admin_headers(self) -> dict[str, str]:
        """grpc-gateway passes Grpc-Metadata-* headers on as gRPC metadata (`macaroon`)."""
        return {"Grpc-Metadata-Macaroon": self.admin_macaroon.read_bytes().hex()}
