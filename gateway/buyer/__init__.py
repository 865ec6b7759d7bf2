"""L402 buyer: pays L402 challenges the way an agent should (within a policy, once).

`L402Client.fetch` is the entry point; `run_ep212` reproduces the EP212
rehearsal. Nothing here logs or prints macaroons or preimages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.buyer.cache import CacheStatus, Credential, CredentialCache
    from gateway.buyer.challenge import Challenge, parse_challenge
    from gateway.buyer.client import ApprovalRequest, FetchResult, L402Client, Outcome
    from gateway.buyer.ep212 import run_ep212
    from gateway.buyer.errors import (
        BuyerError,
        CacheError,
        ChallengeError,
        Ep212Error,
        InvoiceError,
        PaymentError,
        SettingsError,
        TransportError,
    )
    from gateway.buyer.invoice import DecodedInvoice, Quote, decode_invoice, inspect_macaroon
    from gateway.buyer.payers import LndPayer, Payer, PaymentReceipt, WalletExecutorPayer
    from gateway.buyer.policy import Decision, DenyReason, SpendPolicy
    from gateway.buyer.settings import Ep212Settings, PayerSettings

# Loaded on first use: `l402-buyer --version` and the seller import none of it.
_HOMES = {
    "CacheStatus": "gateway.buyer.cache",
    "Credential": "gateway.buyer.cache",
    "CredentialCache": "gateway.buyer.cache",
    "Challenge": "gateway.buyer.challenge",
    "parse_challenge": "gateway.buyer.challenge",
    "ApprovalRequest": "gateway.buyer.client",
    "FetchResult": "gateway.buyer.client",
    "L402Client": "gateway.buyer.client",
    "Outcome": "gateway.buyer.client",
    "run_ep212": "gateway.buyer.ep212",
    "BuyerError": "gateway.buyer.errors",
    "CacheError": "gateway.buyer.errors",
    "ChallengeError": "gateway.buyer.errors",
    "Ep212Error": "gateway.buyer.errors",
    "InvoiceError": "gateway.buyer.errors",
    "PaymentError": "gateway.buyer.errors",
    "SettingsError": "gateway.buyer.errors",
    "TransportError": "gateway.buyer.errors",
    "DecodedInvoice": "gateway.buyer.invoice",
    "Quote": "gateway.buyer.invoice",
    "decode_invoice": "gateway.buyer.invoice",
    "inspect_macaroon": "gateway.buyer.invoice",
    "LndPayer": "gateway.buyer.payers",
    "Payer": "gateway.buyer.payers",
    "PaymentReceipt": "gateway.buyer.payers",
    "WalletExecutorPayer": "gateway.buyer.payers",
    "Decision": "gateway.buyer.policy",
    "DenyReason": "gateway.buyer.policy",
    "SpendPolicy": "gateway.buyer.policy",
    "Ep212Settings": "gateway.buyer.settings",
    "PayerSettings": "gateway.buyer.settings",
}

__all__ = [
    "ApprovalRequest",
    "BuyerError",
    "CacheError",
    "CacheStatus",
    "Challenge",
    "ChallengeError",
    "Credential",
    "CredentialCache",
    "Decision",
    "DecodedInvoice",
    "DenyReason",
    "Ep212Error",
    "Ep212Settings",
    "FetchResult",
    "InvoiceError",
    "L402Client",
    "LndPayer",
    "Outcome",
    "Payer",
    "PayerSettings",
    "PaymentError",
    "PaymentReceipt",
    "Quote",
    "SettingsError",
    "SpendPolicy",
    "TransportError",
    "WalletExecutorPayer",
    "decode_invoice",
    "inspect_macaroon",
    "parse_challenge",
    "run_ep212",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(home), name)
