"""`WWW-Authenticate: Payment ...`: emitting one challenge, reading every offer.

Emission: the five required parameters in a fixed order, then the optional
ones present, every value as a quoted-string (quoted-pair for `"` and `\\`,
tab and obs-text verbatim: byte-exact with Aperture's fixed emitter, and
lossless, which the HMAC depends on since the client echoes what it parsed).

Reading (what a client does, and what the conformance vectors pin):
- every field value and every challenge in it is read (`authparams`); other
  schemes' parameters never leak into a Payment challenge;
- a repeated parameter keeps its FIRST value: an on-path element appending
  `id=...` cannot override what the origin set;
- an offer missing a required parameter (or with an empty `id`) is skipped,
  not fatal; no usable Payment offer at all is NO_CHALLENGE;
- values are returned unchanged (no base64url or JSON checks here: a client
  decodes `request` when it chooses the offer, see `lightning`).
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.payment.authparams import parse_challenge_list, quote
from gateway.payment.challenge import SCHEME, ChallengeParams
from gateway.payment.errors import PaymentAuthError, Reason

REQUIRED = ("id", "realm", "method", "intent", "request")
OPTIONAL = ("expires", "digest", "description", "opaque")


def format_challenge(params: ChallengeParams) -> str:
    """One `WWW-Authenticate` field value for `params` (raises ValueError if unquotable)."""
    if not params.id:
        raise ValueError("a Payment challenge needs a non-empty id")
    parts = [f"{name}={quote(getattr(params, name))}" for name in REQUIRED]
    for name in OPTIONAL:
        value = getattr(params, name)
        if value is not None:
            parts.append(f"{name}={quote(value)}")
    return f"{SCHEME} " + ", ".join(parts)


def _offer(pairs: Iterable[tuple[str, str]]) -> ChallengeParams | str:
    """The challenge, or why this offer is unusable."""
    first: dict[str, str] = {}
    for name, value in pairs:
        first.setdefault(name, value)
    missing = [name for name in REQUIRED if name not in first]
    if missing:
        return f"a Payment challenge lacks {', '.join(missing)}"
    if not first["id"]:
        return "a Payment challenge has an empty id"
    return ChallengeParams(
        id=first["id"],
        realm=first["realm"],
        method=first["method"],
        intent=first["intent"],
        request=first["request"],
        expires=first.get("expires"),
        digest=first.get("digest"),
        description=first.get("description"),
        opaque=first.get("opaque"),
    )


def parse_challenges(values: str | Iterable[str]) -> list[ChallengeParams]:
    """Every usable Payment offer in the field value(s), in order.

    Raises MALFORMED_CHALLENGE when a field value is not valid challenge
    syntax, NO_CHALLENGE when no usable Payment offer is present.
    """
    fields = [values] if isinstance(values, str) else list(values)
    offers: list[ChallengeParams] = []
    why: str | None = None
    for value in fields:
        for raw in parse_challenge_list(value):
            if raw.scheme != SCHEME.lower():
                continue
            offer = _offer(raw.params)
            if isinstance(offer, str):
                why = why or offer
            else:
                offers.append(offer)
    if not offers:
        raise PaymentAuthError(Reason.NO_CHALLENGE, why or "no Payment challenge")
    return offers
