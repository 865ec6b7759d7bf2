"""Which balance a credential unlocks, and which rate-limit subject it is: one rule per scheme.

A metered route keys everything a paid request draws on by the credential's
identity, never by the secret that proves it:

- L402: the macaroon identifier's token id (what `l402-gateway revoke` and the
  admin API name); the bundle is credited once per payment, keyed by the
  invoice's payment hash (which the verified preimage proves settled);
- Payment scheme, charge intent: the payment hash, i.e. sha256 of the
  verified preimage (Aperture's key for charge credentials); its payment id
  is the same hash;
- Payment scheme, session intent: the session id (unit msat).

Every scheme calls its function here, so a balance bought with one form is
never found under another key, and the rate-limit subjects match Aperture's
(`token:`, `hash:`, `session:`; gateway.metering.limits).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.l402.verify import VerifiedToken
from gateway.metering.limits import credential_subject


@dataclass(frozen=True, slots=True)
class CredentialKey:
    """A verified credential's identity for metering; bytes, never a secret."""

    kind: str  # "token" (L402), "hash" (Payment charge), "session" (Payment session)
    ident: bytes
    payment_id: bytes  # what a bundle is credited for, once (the invoice's payment hash)

    @property
    def balance_id(self) -> bytes:
        return self.ident

    @property
    def subject(self) -> str:
        """The rate-limit subject (`token:<hex>`, `hash:<hex>`, `session:<hex>`)."""
        return credential_subject(self.kind, self.ident)

    @property
    def ident_hex(self) -> str:
        return self.ident.hex()


def l402_key(token: VerifiedToken) -> CredentialKey:
    """An L402 token: its token id; credited for its invoice's payment hash."""
    identifier = token.identifier
    return CredentialKey("token", identifier.token_id, identifier.payment_hash)


def charge_key(payment_hash: bytes) -> CredentialKey:
    """A Payment-scheme charge credential (after its preimage was verified)."""
    if len(payment_hash) != 32:
        raise ValueError("a payment hash is 32 bytes")
    return CredentialKey("hash", payment_hash, payment_hash)


def session_key(session_id: bytes) -> CredentialKey:
    """A Payment-scheme session: its deposit is credited by the session's own code."""
    return CredentialKey("session", session_id, session_id)
