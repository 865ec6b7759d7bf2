"""The challenge's parameters, its HMAC-bound id, and its expiry.

A Payment challenge is stateless on the seller: `id` is
base64url(HMAC-SHA256(secret, realm|method|intent|request|expires|digest|opaque))
over exactly seven positional slots (draft-httpauth-payment section 5.1.3.1),
absent optional slots being empty strings, `request` and `opaque` taken as
the base64url text that went on the wire. Whoever echoes the parameters back
cannot change any bound slot without the id failing. `description` is not
bound (display only) and must never be trusted for verification.

The slot delimiter is not escaped: ("a|b", "lightning") and ("a",
"b|lightning") share an HMAC input (Aperture's vectors record this). A seller
controls realm, method and intent, so `issue` refuses a `|` in them, and the
base64url slots cannot hold one; `expires` and `digest` are checked too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.payment import b64url, jcs
from gateway.payment.errors import PaymentAuthError, Reason

SCHEME = "Payment"
METHOD_ID = re.compile(r"[a-z]+")
INTENT_ID = re.compile(r"[A-Za-z0-9-]+")
# RFC 3339 date-time; the seller emits the Z form with whole seconds.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)
MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class ChallengeParams:
    """Every parameter of one challenge; also the `challenge` object a credential echoes."""

    id: str
    realm: str
    method: str
    intent: str
    request: str  # base64url(JCS(request object)), exactly as sent
    expires: str | None = None  # RFC 3339
    digest: str | None = None  # RFC 9530, e.g. "sha-256=:...:"
    description: str | None = None  # display only, not bound
    opaque: str | None = None  # base64url(JCS(flat string map))

    def echo(self) -> dict[str, str]:
        """The JSON `challenge` object of a credential (absent optionals omitted)."""
        out = {
            "id": self.id,
            "realm": self.realm,
            "method": self.method,
            "intent": self.intent,
            "request": self.request,
        }
        for name in ("expires", "digest", "description", "opaque"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def request_object(self) -> dict[str, jcs.JSONValue]:
        """The decoded `request` JSON object (strict base64url and JSON)."""
        return decode_json_object(self.request, Reason.MALFORMED_REQUEST, "request")

    def opaque_object(self) -> dict[str, str] | None:
        if self.opaque is None:
            return None
        value = decode_json_object(self.opaque, Reason.MALFORMED_REQUEST, "opaque")
        if not all(isinstance(v, str) for v in value.values()):
            raise PaymentAuthError(Reason.MALFORMED_REQUEST, "opaque is not a string map")
        return {k: str(v) for k, v in value.items()}


def decode_json_object(text: str, reason: Reason, what: str) -> dict[str, jcs.JSONValue]:
    """base64url text -> JSON object, every failure reported as `reason`."""
    try:
        value = jcs.loads(b64url.decode(text))
    except PaymentAuthError as exc:
        raise PaymentAuthError(reason, f"{what}: {exc.detail}") from None
    if not isinstance(value, dict):
        raise PaymentAuthError(reason, f"{what} is not a JSON object")
    return value


def encode_json_object(value: Mapping[str, jcs.JSONValue]) -> str:
    """base64url(JCS(value)): how `request`, `opaque` and receipts travel."""
    return b64url.encode(jcs.canonicalize(value))


def hmac_input(params: ChallengeParams) -> str:
    """The seven pipe-joined slots the id is computed over."""
    return "|".join(
        (
            params.realm,
            params.method,
            params.intent,
            params.request,
            params.expires or "",
            params.digest or "",
            params.opaque or "",
        )
    )


def compute_id(secret: bytes, params: ChallengeParams) -> str:
    """base64url(HMAC-SHA256(secret, hmac_input(params))); `params.id` is ignored."""
    mac = hmac.new(secret, hmac_input(params).encode("utf-8"), hashlib.sha256).digest()
    return b64url.encode(mac)


def verify_id(secret: bytes, params: ChallengeParams, previous: Iterable[bytes] = ()) -> bool:
    """Constant-time check that `params.id` binds `params` under `secret` (or a retired one)."""
    presented = params.id.encode("utf-8")
    ok = False
    for key in (secret, *previous):
        # Every key is tried (no early exit): the time does not say which one matched.
        ok |= hmac.compare_digest(compute_id(key, params).encode("ascii"), presented)
    return ok


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with whole seconds and `Z`: the one form the seller emits."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: give a timezone")
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """Unix seconds of an RFC 3339 date-time; raises MALFORMED_CHALLENGE."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise PaymentAuthError(Reason.MALFORMED_CHALLENGE, "expires is not an RFC 3339 date-time")
    normal = text.upper().replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(normal).timestamp()
    except ValueError:
        raise PaymentAuthError(Reason.MALFORMED_CHALLENGE, "expires is not a valid date") from None


def is_expired(params: ChallengeParams, now: float) -> bool:
    """True when `expires` is present and not later than `now` (unix seconds)."""
    return params.expires is not None and parse_time(params.expires) <= now


def _check_slot(name: str, value: str | None) -> None:
    if value is not None and "|" in value:
        raise ValueError(f"{name} must not contain '|' (the HMAC slot delimiter)")


def issue(
    secret: bytes,
    *,
    realm: str,
    method: str,
    intent: str,
    request: Mapping[str, jcs.JSONValue],
    expires: datetime | None = None,
    digest: str | None = None,
    description: str | None = None,
    opaque: Mapping[str, str] | None = None,
) -> ChallengeParams:
    """A fresh challenge whose id binds every slot under `secret` (>= 32 bytes)."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the binding secret must be at least {MIN_SECRET_BYTES} bytes")
    if not realm:
        raise ValueError("realm must not be empty")
    if not METHOD_ID.fullmatch(method):
        raise ValueError("method must be lowercase ASCII letters")
    if not INTENT_ID.fullmatch(intent):
        raise ValueError("intent must be letters, digits and '-'")
    for name, value in (("realm", realm), ("digest", digest)):
        _check_slot(name, value)
    unsigned = ChallengeParams(
        id="",
        realm=realm,
        method=method,
        intent=intent,
        request=encode_json_object(request),
        expires=format_time(expires) if expires is not None else None,
        digest=digest,
        description=description,
        opaque=encode_json_object(opaque) if opaque is not None else None,
    )
    return ChallengeParams(**{**unsigned.__dict__, "id": compute_id(secret, unsigned)})
