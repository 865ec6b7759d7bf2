"""Async LND client (grpc.aio) with typed results and errors."""

from gateway.lightning.errors import (
    LndError,
    LndInvalidArgument,
    LndNotFound,
    LndPermissionDenied,
    LndUnavailable,
    PaymentFailed,
)
from gateway.lightning.lnd.node import LndClient
from gateway.lightning.types import (
    AddedInvoice,
    Invoice,
    InvoiceState,
    NodeInfo,
    Payment,
    PayReq,
    WalletState,
)

__all__ = [
    "AddedInvoice",
    "Invoice",
    "InvoiceState",
    "LndClient",
    "LndError",
    "LndInvalidArgument",
    "LndNotFound",
    "LndPermissionDenied",
    "LndUnavailable",
    "NodeInfo",
    "PayReq",
    "Payment",
    "PaymentFailed",
    "WalletState",
]
