"""L402 buyer: pays L402 challenges the way an agent should (within a policy, once).

`L402Client.fetch` is the entry point; `run_ep212` reproduces the EP212
rehearsal. Nothing here logs or prints macaroons or preimages.
"""

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
