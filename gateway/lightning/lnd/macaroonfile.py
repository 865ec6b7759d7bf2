"""The macaroon LND is sent, read once from where the operator's setting points.

Both clients (the seller's lean one and grpc.aio's) take the same setting: a
path, raw bytes, or the hex text itself, as LND's own tools accept it.
"""

from __future__ import annotations

from pathlib import Path


def read_macaroon(macaroon: Path | str | bytes | None) -> str | None:
    """A macaroon as hex, from a file, raw bytes or hex text (None: no macaroon)."""
    if macaroon is None:
        return None
    if isinstance(macaroon, bytes):
        return macaroon.hex()
    if isinstance(macaroon, Path):
        return macaroon.read_bytes().hex()
    text = macaroon.strip()
    try:
        bytes.fromhex(text)
    except ValueError:
        return Path(text).read_bytes().hex()
    return text.lower()
