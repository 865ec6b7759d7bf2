"""The LND implementation of the Lightning backend (grpc.aio): LndClient."""

from gateway.lightning.lnd.node import LndClient

__all__ = ["LndClient"]
