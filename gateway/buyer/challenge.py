"""Strict `WWW-Authenticate` parsing for L402/LSAT challenges.

Sellers send the challenge in different shapes: Aperture sends two headers
(`LSAT ...` then `L402 ...`), proxies may fold them into one comma-separated
value, the 2026 spec spells the macaroon `token=` and adds `version=`, and some
sellers add `amount_msats=`. We accept all of those but refuse anything
ambiguous (duplicate attributes, two different L402 challenges, unterminated
quotes): a buyer that guesses here may pay for the wrong thing.

When both schemes are present the `L402` challenge wins; `LSAT` is only used
when no `L402` challenge exists. Challenges for other schemes (`Basic`,
`Bearer`, ...) are skipped but must still be syntactically valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gateway.buyer.errors import ChallengeError
from gateway.l402.grammar import OWS as _OWS
from gateway.l402.grammar import TCHARS as _TCHAR

_SCHEMES = ("l402", "lsat")
_MAX_HEADER_LEN = 16_384


@dataclass(frozen=True)
class Challenge:
    """One L402/LSAT challenge. `macaroon` is base64 text as sent (secret-ish: never log)."""

    scheme: str
    macaroon: str = field(repr=False)
    invoice: str
    amount_msats: int | None = None
    version: str | None = None
    params: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass
class _Raw:
    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None


class _Scanner:
    """A cursor over one header value implementing RFC 9110 challenge syntax."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ows(self) -> None:
        while self.peek() and self.peek() in _OWS:
            self.pos += 1

    def skip_commas(self) -> None:
        while self.peek() and (self.peek() in _OWS or self.peek() == ","):
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.peek() and self.peek() in _TCHAR:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        """A quoted-string starting at the current '"'; backslash escapes the next char."""
        self.pos += 1
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise ChallengeError("unterminated_quote", "quoted attribute value never closes")
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                escaped = self.peek()
                if not escaped:
                    raise ChallengeError("unterminated_quote", "dangling escape at end of header")
                self.pos += 1
                out.append(escaped)
            else:
                out.append(ch)

    def bare_value(self) -> str:
        """An unquoted value: base64 and bolt11 contain '/', '+' and '=' which are not tchars."""
        start = self.pos
        while self.peek() and self.peek() not in ' \t,"':
            self.pos += 1
        return self.text[start : self.pos]

    def lookahead_is_param(self) -> bool:
        """True when the next item is `name =` (an auth-param) rather than a new scheme."""
        saved = self.pos
        try:
            if not self.token():
                return False
            self.skip_ows()
            return self.peek() == "="
        finally:
            self.pos = saved


def _parse_value(text: str) -> list[_Raw]:
    scanner = _Scanner(text)
    challenges: list[_Raw] = []
    scanner.skip_commas()
    while not scanner.at_end():
        scheme = scanner.token()
        if not scheme:
            raise ChallengeError(
                "malformed_header", f"expected an auth scheme at offset {scanner.pos}"
            )
        current = _Raw(scheme=scheme)
        challenges.append(current)
        scanner.skip_ows()
        if not scanner.lookahead_is_param() and scanner.peek() not in ("", ","):
            value = scanner.bare_value()
            current.token68 = value
            scanner.skip_ows()
            if scanner.peek() not in ("", ","):
                raise ChallengeError("malformed_header", f"unexpected text after {scheme} token")
        while scanner.lookahead_is_param():
            name = scanner.token().lower()
            scanner.skip_ows()
            scanner.pos += 1  # the '='
            scanner.skip_ows()
            value = scanner.quoted() if scanner.peek() == '"' else scanner.bare_value()
            if name in current.params:
                raise ChallengeError("duplicate_attribute", f"{scheme} repeats {name!r}")
            current.params[name] = value
            scanner.skip_ows()
            if scanner.peek() not in ("", ","):
                raise ChallengeError("malformed_header", f"unexpected character after {name!r}")
            scanner.skip_commas()
        scanner.skip_commas()
    return challenges


def _build(raw: _Raw) -> Challenge:
    params = raw.params
    if raw.token68 is not None:
        raise ChallengeError("malformed_header", f"{raw.scheme} challenge must carry attributes")
    macaroon = params.get("macaroon")
    token = params.get("token")
    if macaroon is not None and token is not None and macaroon != token:
        raise ChallengeError("conflicting_macaroon", "macaroon= and token= differ")
    macaroon = macaroon if macaroon is not None else token
    if not macaroon:
        raise ChallengeError("missing_macaroon", f"{raw.scheme} challenge has no macaroon/token")
    invoice = params.get("invoice")
    if not invoice:
        raise ChallengeError("missing_invoice", f"{raw.scheme} challenge has no invoice")
    amount: int | None = None
    if "amount_msats" in params:
        text = params["amount_msats"]
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            raise ChallengeError("invalid_amount", "amount_msats is not a decimal integer")
        amount = int(text)
    return Challenge(
        scheme=raw.scheme.upper(),
        macaroon=macaroon,
        invoice=invoice,
        amount_msats=amount,
        version=params.get("version"),
        params=dict(params),
    )


def parse_challenge(values: Iterable[str]) -> Challenge:
    """Pick the L402 (else LSAT) challenge out of every `WWW-Authenticate` value."""
    found: dict[str, list[_Raw]] = {scheme: [] for scheme in _SCHEMES}
    for value in values:
        if len(value) > _MAX_HEADER_LEN:
            raise ChallengeError("header_too_long", "WWW-Authenticate value is too long")
        for raw in _parse_value(value):
            if raw.scheme.lower() in found:
                found[raw.scheme.lower()].append(raw)
    for scheme in _SCHEMES:
        candidates = found[scheme]
        if not candidates:
            continue
        if any(c.params != candidates[0].params for c in candidates[1:]):
            raise ChallengeError("duplicate_challenge", f"several different {scheme} challenges")
        return _build(candidates[0])
    raise ChallengeError("no_l402_challenge", "no L402 or LSAT challenge in WWW-Authenticate")
