"""Sans-I/O L402 protocol core: no sockets, no aiohttp, grpc or database.

`verify` is the module (call `verify.verify(...)`), not re-bound to the
function, so `gateway.l402.verify.verify` keeps working.

Adapters (LND, token store, HTTP server) plug in through the Protocols in
`gateway.l402.mint`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Loaded on first use: a module that needs one name (the header grammar, say) does not
# load the whole core (the log redactor of the worker supervisor, the CLI's parser).
_HOMES = {
    "Credential": "credentials",
    "format_authorization": "credentials",
    "L402Error": "errors",
    "Reason": "errors",
    "Identifier": "identifier",
    "DecodedMacaroon": "macaroons",
    "Challenge": "mint",
    "InvoiceLike": "mint",
    "InvoiceSource": "mint",
    "Minter": "mint",
    "MintRequest": "mint",
    "NewInvoice": "mint",
    "RootKeyStore": "mint",
    "TokenRecord": "records",
    "VerifiedToken": "verify",
    "precheck": "verify",
}
_MODULES = frozenset({"caveats", "challenge", "credentials", "macaroons", "verify"})


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"gateway.l402.{name}")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(f"gateway.l402.{home}"), name)


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
