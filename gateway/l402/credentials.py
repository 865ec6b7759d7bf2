"""Find and parse the L402 credential in request headers.

Forms accepted (L402-FACTS §1):

- `Authorization: L402 <b64 macaroon>:<hex preimage>` (also `LSAT`);
- `Authorization: L402 macaroon="<b64>", preimage="<hex>"` (`token=` may
  replace `macaroon=`; `version="0"` is tolerated);
- `Token: <hex>` or `Grpc-Metadata-Token: <hex>` (bLIP-26), and
  `Grpc-Metadata-Macaroon: <hex>` or `Macaroon: <hex>` (gRPC clients such as
  Loop): a hex macaroon carrying a `preimage=<hex>` first-party caveat.

Header names and auth schemes are case-insensitive, hex may be either case.
Precedence (ours: Aperture v0.5.0 reads neither `Token` header, and only the
last `Authorization`; docs/compatibility.md): `Token`, then
`Grpc-Metadata-Token`, then an L402/LSAT `Authorization`, then
`Grpc-Metadata-Macaroon`, then `Macaroon`.
The first kind present decides; later kinds are ignored (a `Macaroon` header
beside an L402 `Authorization` may be an LND macaroon meant for the upstream).
Several headers of the deciding kind are fine when they carry the same
credential (same macaroon bytes and preimage); disagreeing ones are
`malformed`. Other `Authorization` schemes (e.g. `Bearer`) are ignored. A
preimage must be exactly 64 hex characters, with one tolerated exception:
l402-requests' LND wallet base64-decodes LND's hex preimage and sends those
48 bytes as 96 hex characters. Re-encoding them recovers the 64 hex
characters exactly, so that form is accepted when (and only when) it
round-trips to hex; the payment is still proven by sha256(preimage) ==
payment hash. Any other length is refused with a detail that names it.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.l402 import caveats as caveat_rules
from gateway.l402 import grammar, macaroons
from gateway.l402.errors import malformed
from gateway.l402.macaroons import DecodedMacaroon

SCHEME_L402 = "L402"
SCHEME_LSAT = "LSAT"
SCHEME_MACAROON_HEADER = "macaroon-header"

PREIMAGE_HEX_LEN = 64
MANGLED_PREIMAGE_HEX_LEN = 96  # l402-requests: base64-decoded hex, re-encoded as hex
MAX_HEADER_LEN = 8192

_SCHEME = re.compile(r"([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:[ \t]+(.*))?", re.DOTALL)
_PARAM_START = re.compile(r"(?:macaroon|token|preimage|version)[ \t]*=", re.IGNORECASE)
_PARAM = re.compile(r'[ \t]*([A-Za-z_]+)[ \t]*=[ \t]*(?:"([^"\\]*)"|([^",\s]*))[ \t]*(,|\Z)')
_HEX = re.compile(r"[0-9a-fA-F]*")
# The first kind present decides (module docstring).
_PRECEDENCE = (
    grammar.TOKEN_HEADER,
    grammar.GRPC_TOKEN_HEADER,
    grammar.AUTHORIZATION,
    grammar.GRPC_MACAROON_HEADER,
    grammar.MACAROON_HEADER,
)


@dataclass(frozen=True, slots=True)
class Credential:
    """A parsed (not yet verified) credential; repr hides the secrets."""

    macaroon: DecodedMacaroon = field(repr=False)
    preimage: bytes = field(repr=False)
    scheme: str

    @property
    def macaroon_b64(self) -> str:
        return macaroons.encode_b64(self.macaroon.raw)

    @property
    def authorization(self) -> str:
        """The single `Authorization` value to forward upstream."""
        return format_authorization(self.macaroon_b64, self.preimage.hex())


def format_authorization(macaroon_b64: str, preimage_hex: str) -> str:
    return f"{SCHEME_L402} {macaroon_b64}:{preimage_hex}"


def _unmangle_preimage(text: str) -> str | None:
    """The 64 hex characters behind l402-requests' 96-hex form, or None."""
    if len(text) != MANGLED_PREIMAGE_HEX_LEN or not _HEX.fullmatch(text):
        return None
    recovered = base64.b64encode(bytes.fromhex(text)).decode("ascii")
    return recovered if _HEX.fullmatch(recovered) else None


def parse_preimage(text: str) -> bytes:
    """Exactly 32 bytes as 64 hex characters, either case (or the known 96-hex mangling)."""
    text = _unmangle_preimage(text) or text
    if len(text) != PREIMAGE_HEX_LEN:
        raise malformed(
            f"preimage must be {PREIMAGE_HEX_LEN} hex characters (32 bytes), got {len(text)}"
        )
    if not _HEX.fullmatch(text):
        raise malformed("preimage is not hex")
    return bytes.fromhex(text)


def _params(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        match = _PARAM.match(text, pos)
        if match is None or match.end() == pos:
            raise malformed("L402 credential parameters are not name=value pairs")
        name = match.group(1).lower()
        if name in found:
            raise malformed(f"duplicate credential parameter {name!r}")
        value = match.group(2) if match.group(2) is not None else match.group(3)
        found[name] = value
        pos = match.end()
        if match.group(4) == ",":
            while pos < len(text) and text[pos] in " \t":
                pos += 1
            if pos == len(text):
                raise malformed("trailing comma in L402 credential")
    return found


def _from_params(text: str, scheme: str) -> Credential:
    params = _params(text)
    unknown = set(params) - {"macaroon", "token", "preimage", "version"}
    if unknown:
        raise malformed(f"unknown credential parameter {sorted(unknown)[0][:20]!r}")
    if params.get("version", "0") != "0":
        raise malformed("unsupported L402 credential version")
    if "macaroon" in params and "token" in params:
        raise malformed("both macaroon= and token= given")
    mac_text = params.get("macaroon", params.get("token"))
    if mac_text is None or "preimage" not in params:
        raise malformed("L402 credential needs macaroon= (or token=) and preimage=")
    return Credential(macaroons.decode(mac_text), parse_preimage(params["preimage"]), scheme)


def _from_authorization(value: str) -> Credential | None:
    match = _SCHEME.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    scheme = match.group(1).upper()
    if scheme not in (SCHEME_L402, SCHEME_LSAT):
        return None
    if len(value) > MAX_HEADER_LEN:
        raise malformed(f"Authorization header longer than {MAX_HEADER_LEN} characters")
    rest = (match.group(2) or "").strip(" \t")
    if not rest:
        raise malformed(f"empty {scheme} credential")
    if _PARAM_START.match(rest):
        return _from_params(rest, scheme)
    mac_text, sep, preimage_text = rest.partition(":")
    if not sep or ":" in preimage_text:
        raise malformed(f"{scheme} credential is not <macaroon>:<preimage>")
    return Credential(macaroons.decode(mac_text), parse_preimage(preimage_text), scheme)


def _from_macaroon_header(value: str) -> Credential:
    if len(value) > MAX_HEADER_LEN:
        raise malformed(f"macaroon header longer than {MAX_HEADER_LEN} characters")
    decoded = macaroons.decode_hex(value)
    preimages: set[bytes] = set()
    for caveat in decoded.caveats:
        condition, caveat_value = caveat_rules.split(caveat)
        if condition == caveat_rules.PREIMAGE:
            preimages.add(parse_preimage(caveat_value))
    if not preimages:
        raise malformed("macaroon header without a preimage caveat")
    if len(preimages) > 1:
        raise malformed("macaroon carries conflicting preimage caveats")
    return Credential(decoded, preimages.pop(), SCHEME_MACAROON_HEADER)


def _same(a: Credential, b: Credential) -> bool:
    return a.macaroon.raw == b.macaroon.raw and hmac.compare_digest(a.preimage, b.preimage)


def _agree(found: list[Credential]) -> Credential:
    first = found[0]
    for other in found[1:]:
        if not _same(first, other):
            raise malformed("several L402 credentials that disagree")
    for cred in found:
        if cred.scheme == SCHEME_L402:
            return cred
    return first


def parse(headers: Sequence[tuple[str, str]]) -> Credential | None:
    """The request's L402 credential; None if there is none at all.

    Raises `L402Error(malformed)` when one is present but broken.
    """
    for kind in _PRECEDENCE:
        values = [value for name, value in headers if name.lower() == kind]
        if not values:
            continue
        if kind == grammar.AUTHORIZATION:
            found = [c for c in (_from_authorization(v) for v in values) if c is not None]
        else:
            found = [_from_macaroon_header(v.strip(" \t")) for v in values if v.strip(" \t")]
        if found:
            return _agree(found)
    return None
