"""The Lightning backend seam (backend.py), its neutral types and errors, and the factory.

Importing this package loads no backend: `open_backend` imports the one the
config names (gateway.lightning.lnd for LND: grpc loads only then).
"""

from gateway.lightning.backend import Backend, Health, RefundPayer
from gateway.lightning.errors import (
    BackendError,
    BackendUnavailable,
    InvalidRequest,
    NotFound,
    PaymentFailed,
    PermissionDenied,
)
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
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "Health",
    "InvalidRequest",
    "Invoice",
    "InvoiceState",
    "NodeInfo",
    "NotFound",
    "PayReq",
    "Payment",
    "PaymentFailed",
    "PermissionDenied",
    "RefundPayer",
    "WalletState",
]
