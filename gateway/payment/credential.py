"""`Authorization: Payment <base64url JSON>`: the credential, read and written.

The token is `{"challenge": {...echo...}, "source"?: str, "payload": {...}}`.
Reading is strict about the envelope (the one thing every method shares):
strict base64url (`b64url`), strict JSON (`jcs.loads`: no duplicate names),
an object; `challenge` an object whose five required fields are non-empty
strings and whose optional ones, when present, are strings; `payload` an
object; `source` a string when present. Unknown top-level and echo fields
are ignored (forward compatibility, as the spec requires). The payload is
left to the method's parser (`payloads`).

The credential JSON need not be canonical (Aperture and pympp emit their own
member orders); this module emits JCS. Auth-scheme matching is
case-insensitive (RFC 9110 section 11.1); the token is `1*SP` after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.payment import b64url, jcs
from gateway.payment.challenge import SCHEME, ChallengeParams
from gateway.payment.errors import PaymentAuthError, Reason

MAX_TOKEN_CHARS = 65_536  # Aperture's bound is about the same; the spec's floor is 4 KB
_ECHO_REQUIRED = ("id", "realm", "method", "intent", "request")
_ECHO_OPTIONAL = ("expires", "digest", "description", "opaque")


@dataclass(frozen=True)
class Credential:
    """A decoded Payment credential. `payload` holds secrets (preimages): never log it."""

    challenge: ChallengeParams
    payload: Mapping[str, Any] = field(repr=False)
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"challenge": self.challenge.echo(), "payload": dict(self.payload)}
        if self.source is not None:
            out["source"] = self.source
        return out


def _bad(detail: str) -> PaymentAuthError:
    return PaymentAuthError(Reason.MALFORMED_CREDENTIAL, detail)


def split_scheme(value: str) -> tuple[str, str] | None:
    """(scheme, rest) of an Authorization value, or None when it has no scheme."""
    scheme, sep, rest = value.strip(" \t").partition(" ")
    if not scheme:
        return None
    return scheme, rest.lstrip(" ") if sep else ""


def is_payment(value: str) -> bool:
    """True when the Authorization value uses the Payment scheme (any case)."""
    parts = split_scheme(value)
    return parts is not None and parts[0].lower() == SCHEME.lower()


def _echo(value: Any) -> ChallengeParams:
    if not isinstance(value, dict):
        raise _bad("challenge is not an object")
    fields: dict[str, str | None] = {}
    for name in _ECHO_REQUIRED:
        text = value.get(name)
        if not isinstance(text, str) or not text:
            raise _bad(f"challenge.{name} is missing or not a non-empty string")
        fields[name] = text
    for name in _ECHO_OPTIONAL:
        text = value.get(name)
        if text is not None and not isinstance(text, str):
            raise _bad(f"challenge.{name} is not a string")
        fields[name] = text
    return ChallengeParams(**fields)  # type: ignore[arg-type]


def decode_token(token: str, *, allow_padding: bool = False) -> Credential:
    """The credential in a bare token (what follows `Payment `)."""
    if not token:
        raise _bad("empty credential token")
    if len(token) > MAX_TOKEN_CHARS:
        raise _bad("credential token is too large")
    try:
        document = jcs.loads(b64url.decode(token, allow_padding=allow_padding))
    except PaymentAuthError as exc:
        raise _bad(exc.detail) from None
    if not isinstance(document, dict):
        raise _bad("credential is not a JSON object")
    challenge = _echo(document.get("challenge"))
    payload = document.get("payload")
    if not isinstance(payload, dict):
        raise _bad("payload is missing or not an object")
    source = document.get("source")
    if source is not None and not isinstance(source, str):
        raise _bad("source is not a string")
    return Credential(challenge, payload, source)


def parse_authorization(value: str, *, allow_padding: bool = False) -> Credential:
    """The credential in one `Authorization` field value (`Payment <token>`)."""
    parts = split_scheme(value)
    if parts is None or parts[0].lower() != SCHEME.lower():
        raise _bad("the Authorization value does not use the Payment scheme")
    return decode_token(parts[1], allow_padding=allow_padding)


def find_credential(values: Iterable[str], *, allow_padding: bool = False) -> Credential | None:
    """The one Payment credential among all `Authorization` values, None when there is none.

    More than one Payment credential is MULTIPLE_CREDENTIALS (the spec says
    400): the seller must not guess which one the client meant.
    """
    found = [v for v in values if is_payment(v)]
    if len(found) > 1:
        raise PaymentAuthError(Reason.MULTIPLE_CREDENTIALS, "several Payment credentials")
    return parse_authorization(found[0], allow_padding=allow_padding) if found else None


def encode_token(credential: Credential) -> str:
    """base64url(JCS(credential))."""
    return b64url.encode(jcs.canonicalize(credential.to_json()))


def format_authorization(credential: Credential) -> str:
    """`Payment <token>`: the Authorization field value."""
    return f"{SCHEME} {encode_token(credential)}"
