"""The "Payment" HTTP authentication scheme (MPP), sans I/O, standard library only.

Beside `gateway.l402`: the same seller may offer both schemes. Modules, one
concern each:

  b64url      strict unpadded base64url (one spelling per payload)
  jcs         RFC 8785 canonical JSON and the strict JSON reader
  authparams  RFC 9110 challenge lists, quoted-strings
  challenge   ChallengeParams, the seven-slot HMAC id, expiry, `issue`
  wwwauth     WWW-Authenticate: Payment (emit one, read every offer)
  credential  Authorization: Payment (envelope)
  payloads    the lightning payloads: charge, session open/bearer/topUp/close
  lightning   the lightning request objects (charge, session), deposit rule
  bolt11      the invoice facts a seller checks (no signature)
  receipts    Payment-Receipt, SSE need-top-up / timeout events
  problems    RFC 9457 problem types and statuses
  verify      pure verification of charge and session credentials
  sessions    session state transitions (the seller's store makes them atomic)
  errors      Reason, PaymentAuthError

docs/payment-scheme.md is the protocol reference this code implements.
"""

from gateway.payment.challenge import ChallengeParams, compute_id, issue, verify_id
from gateway.payment.credential import Credential, find_credential, format_authorization
from gateway.payment.errors import PaymentAuthError, Reason
from gateway.payment.receipts import Receipt, RefundStatus, format_receipt, parse_receipt
from gateway.payment.wwwauth import format_challenge, parse_challenges

__all__ = [
    "ChallengeParams",
    "Credential",
    "PaymentAuthError",
    "Reason",
    "Receipt",
    "RefundStatus",
    "compute_id",
    "find_credential",
    "format_authorization",
    "format_challenge",
    "format_receipt",
    "issue",
    "parse_challenges",
    "parse_receipt",
    "verify_id",
]
