"""The LND implementation of the Lightning backend.

`LndSeller` (seller.py): the seller's calls on a lean HTTP/2 client, no grpcio.
`LndClient` (node.py): grpc.aio, for the buyer, the regtest tooling and refunds;
imported on first use so that the seller's processes never load grpcio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.lightning.lnd.node import LndClient
    from gateway.lightning.lnd.seller import LndSeller

__all__ = ["LndClient", "LndSeller"]


def __getattr__(name: str) -> Any:
    if name == "LndClient":
        from gateway.lightning.lnd.node import LndClient

        return LndClient
    if name == "LndSeller":
        from gateway.lightning.lnd.seller import LndSeller

        return LndSeller
    raise AttributeError(name)
