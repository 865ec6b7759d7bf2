"""RFC 9110 section 11 challenge lists: `#challenge`, auth-params, quoted-strings.

One `WWW-Authenticate` field value may carry several challenges of several
schemes ("Basic realm=x, Payment id=..., Payment id=..."), because senders
join repeated fields with ", " (the Fetch standard does). A parser that
splits on commas, or stops a quoted-string at the first quote, either merges
two offers (pairing one offer's id with another's invoice) or lets a quoted
value ("realm=\\"Payment id=c\\"") pose as structure. This module only
tokenizes; which parameters a Payment challenge needs is `wwwauth`'s job.

Grammar (RFC 9110 sections 5.6, 11.2, 11.3):
  challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
  auth-param  = token BWS "=" BWS ( token / quoted-string )
  token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
Empty list elements (", ,") are allowed. Scheme and parameter names are
case-insensitive: names come back lower-cased, values verbatim (unescaped).
Repeated parameter names are all kept, in order; the caller decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.payment.errors import PaymentAuthError, Reason

TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/")
_OWS = " \t"
MAX_FIELD_CHARS = 32_768  # the spec asks clients to handle 4 KB and servers to stay under 8 KB


@dataclass(frozen=True)
class RawChallenge:
    """One challenge as written: lower-cased scheme, params in order, or a token68."""

    scheme: str
    params: tuple[tuple[str, str], ...] = ()
    token68: str | None = None

    def first(self, name: str) -> str | None:
        """The first value of `name` (repeats are ignored: see wwwauth)."""
        for key, value in self.params:
            if key == name:
                return value
        return None


def _bad(detail: str) -> PaymentAuthError:
    return PaymentAuthError(Reason.MALFORMED_CHALLENGE, detail)


class _Cursor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self, ahead: int = 0) -> str:
        index = self.pos + ahead
        return self.text[index] if index < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.peek() and self.peek() in TCHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        """A quoted-string at the cursor; quoted-pair drops the backslash."""
        self.pos += 1
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise _bad("a quoted-string never closes")
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                escaped = self.peek()
                if not escaped:
                    raise _bad("a quoted-pair is cut off at the end of the field")
                self.pos += 1
                ch = escaped
            if (ch < " " and ch != "\t") or ch == "\x7f":
                raise _bad("a control character inside a quoted-string")
            out.append(ch)

    def at_param(self) -> bool:
        """True when `token BWS "=" BWS` followed by a value starts here."""
        saved = self.pos
        try:
            if not self.token():
                return False
            self.skip(_OWS)
            if self.peek() != "=":
                return False
            self.pos += 1
            self.skip(_OWS)
            ch = self.peek()
            return ch == '"' or (ch != "" and ch in TCHARS)
        finally:
            self.pos = saved

    def token68(self) -> str | None:
        """A token68 ending at a comma or the end of the field, else None (cursor kept)."""
        saved = self.pos
        while self.peek() and self.peek() in _TOKEN68:
            self.pos += 1
        if self.pos == saved:
            return None
        while self.peek() == "=":
            self.pos += 1
        end = self.pos
        self.skip(_OWS)
        if self.peek() in ("", ","):
            return self.text[saved:end]
        self.pos = saved
        return None


def parse_challenge_list(value: str) -> list[RawChallenge]:
    """Every challenge in one field value, in order; raises MALFORMED_CHALLENGE."""
    if len(value) > MAX_FIELD_CHARS:
        raise _bad("WWW-Authenticate field value is too long")
    cur = _Cursor(value)
    out: list[RawChallenge] = []
    while True:
        cur.skip(_OWS + ",")
        if not cur.peek():
            return out
        scheme = cur.token()
        if not scheme:
            raise _bad(f"expected an auth-scheme at offset {cur.pos}")
        if cur.peek() not in ("", ",", " ", "\t"):
            raise _bad(f"unexpected character after the {scheme!r} scheme")
        cur.skip(_OWS)
        params: list[tuple[str, str]] = []
        token68 = None if cur.at_param() else cur.token68()
        while token68 is None and cur.at_param():
            name = cur.token().lower()
            cur.skip(_OWS)
            cur.pos += 1  # "="
            cur.skip(_OWS)
            params.append((name, cur.quoted() if cur.peek() == '"' else cur.token()))
            cur.skip(_OWS)
            if cur.peek() not in ("", ","):
                raise _bad(f"unexpected character after the {name!r} parameter")
            # Past the commas: another auth-param continues this challenge, a bare token
            # starts the next one.
            while cur.peek() and cur.peek() in _OWS + ",":
                cur.pos += 1
        if token68 is None and not params and cur.peek() not in ("", ","):
            raise _bad(f"the {scheme!r} challenge is neither a token68 nor auth-params")
        out.append(RawChallenge(scheme.lower(), tuple(params), token68))


def quote(value: str) -> str:
    """`value` as an RFC 9110 quoted-string; refuses what no quoted-string can carry."""
    out = ['"']
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif (ch < " " and ch != "\t") or ch == "\x7f":
            raise ValueError("a control character cannot be carried in a quoted-string")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def is_token(text: str) -> bool:
    """True for a non-empty RFC 9110 token."""
    return bool(text) and all(ch in TCHARS for ch in text)
