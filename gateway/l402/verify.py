"""Verify a parsed credential against its root key and the route's policy.

Split in two so the server can refuse a wrong preimage before touching the
store: `precheck` needs no secret, `verify` needs the root key fetched by
`precheck(...).key_id`. Every step is cheap (two SHA-256 plus one HMAC per
caveat), so no cache is needed here.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from gateway.l402 import caveats, macaroons
from gateway.l402.credentials import Credential
from gateway.l402.errors import L402Error, Reason
from gateway.l402.identifier import Identifier


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    identifier: Identifier
    key_id: bytes
    valid_until: int | None

    @property
    def token_id_hex(self) -> str:
        return self.identifier.token_id.hex()


def precheck(credential: Credential) -> Identifier:
    """Decode the identifier and prove the payment: sha256(preimage) == hash."""
    identifier = Identifier.decode(credential.macaroon.identifier)
    digest = hashlib.sha256(credential.preimage).digest()
    if not hmac.compare_digest(digest, identifier.payment_hash):
        raise L402Error(Reason.PREIMAGE_MISMATCH, "preimage does not match the payment hash")
    return identifier


def verify(
    credential: Credential,
    root_key: bytes | None,
    service: str,
    required_capability: str | None,
    now: int,
    *,
    prechecked: Identifier | None = None,
) -> VerifiedToken:
    """identifier -> preimage -> root key present -> HMAC -> caveats.

    `prechecked` is `precheck(credential)`'s result when the caller already ran it
    (to find the root key), so the identifier and the preimage are not checked twice.
    """
    identifier = prechecked or precheck(credential)
    if root_key is None:
        raise L402Error(Reason.REVOKED, "unknown or revoked token")
    if not macaroons.signature_valid(root_key, credential.macaroon):
        raise L402Error(Reason.BAD_SIGNATURE, "macaroon signature does not verify")
    valid_until = caveats.enforce(
        credential.macaroon.caveats,
        service,
        required_capability,
        now,
        preimage=credential.preimage,
    )
    return VerifiedToken(identifier, identifier.key_id, valid_until)
