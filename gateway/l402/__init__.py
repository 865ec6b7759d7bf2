"""Sans-I/O L402 protocol core: no sockets, no aiohttp, grpc or database.

`verify` is the module (call `verify.verify(...)`), not re-bound to the
function, so `gateway.l402.verify.verify` keeps working.

Adapters (LND, token store, HTTP server) plug in through the Protocols in
`gateway.l402.mint`.
"""

from gateway.l402 import caveats, challenge, credentials, macaroons, verify
from gateway.l402.credentials import Credential, format_authorization
from gateway.l402.errors import L402Error, Reason
from gateway.l402.identifier import Identifier
from gateway.l402.macaroons import DecodedMacaroon
from gateway.l402.mint import (
    Challenge,
    InvoiceLike,
    InvoiceSource,
    Minter,
    MintRequest,
    NewInvoice,
    RootKeyStore,
)
from gateway.l402.records import TokenRecord
from gateway.l402.verify import VerifiedToken, precheck

__all__ = [
    "Challenge",
    "Credential",
    "DecodedMacaroon",
    "Identifier",
    "InvoiceLike",
    "InvoiceSource",
    "L402Error",
    "MintRequest",
    "Minter",
    "NewInvoice",
    "Reason",
    "RootKeyStore",
    "TokenRecord",
    "VerifiedToken",
    "caveats",
    "challenge",
    "credentials",
    "format_authorization",
    "macaroons",
    "precheck",
    "verify",
]
