"""Macaroon V2 binary format: mint, strict decode, signature check.

We write our own encoder and parser instead of leaning on pymacaroons: its
deserializer silently drops junk characters, accepts V1 and trailing bytes and
raises unrelated exception types. Everything here that rejects input raises
`L402Error(malformed)` and nothing else.

Accepted text encodings (`decode`): standard base64 with correct padding (the
canonical form we emit and Aperture expects), standard without padding, and
the url-safe alphabet with or without padding (what pymacaroons-based clients
emit). Alphabets must not be mixed, no whitespace or other characters are
allowed, and the text must be the canonical encoding of its bytes (unused
trailing bits zero). Any spelling decodes to the same bytes, which the HMAC
covers, so the leniency does not weaken verification. `decode_hex` takes upper
or lower case hex (the gRPC `Macaroon:` metadata form).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.l402.errors import malformed

LOCATION = "lsat"
MAX_RAW_LEN = 4096
MAX_B64_LEN = 4096  # characters of base64 text accepted
MAX_HEX_LEN = 2 * MAX_RAW_LEN  # characters of hex text accepted
SIGNATURE_LEN = 32

_V2 = 2
_EOS = 0
_FIELD_LOCATION = 1
_FIELD_IDENTIFIER = 2
_FIELD_VID = 4
_FIELD_SIGNATURE = 6
_KEY_GENERATOR = b"macaroons-key-generator"

_STD_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL_B64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_HEX = re.compile(r"[0-9a-fA-F]*")


@dataclass(frozen=True, slots=True)
class DecodedMacaroon:
    """A parsed V2 macaroon. repr hides everything but the location: a
    macaroon carrying a `preimage=` caveat is a complete bearer credential."""

    raw: bytes = field(repr=False)
    location: str
    identifier: bytes = field(repr=False)
    caveats: tuple[str, ...] = field(repr=False)
    signature: bytes = field(repr=False)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _signature(root_key: bytes, identifier: bytes, caveats: Sequence[str]) -> bytes:
    sig = _hmac(_hmac(_KEY_GENERATOR, root_key), identifier)
    for caveat in caveats:
        sig = _hmac(sig, caveat.encode("utf-8"))
    return sig


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _packet(field_type: int, payload: bytes) -> bytes:
    return _uvarint(field_type) + _uvarint(len(payload)) + payload


def _serialize(location: str, identifier: bytes, caveats: Sequence[str], sig: bytes) -> bytes:
    out = bytearray([_V2])
    if location:
        out += _packet(_FIELD_LOCATION, location.encode("utf-8"))
    out += _packet(_FIELD_IDENTIFIER, identifier)
    out.append(_EOS)
    for caveat in caveats:
        out += _packet(_FIELD_IDENTIFIER, caveat.encode("utf-8"))
        out.append(_EOS)
    out.append(_EOS)
    out += _packet(_FIELD_SIGNATURE, sig)
    return bytes(out)


def _check_caveat(caveat: str) -> None:
    if not caveat:
        raise ValueError("empty caveat")


def mint(
    root_key: bytes, identifier: bytes, caveats: Sequence[str], location: str = LOCATION
) -> bytes:
    """A V2 binary macaroon with first-party `caveats` in order."""
    if not root_key:
        raise ValueError("root key must not be empty")
    if not identifier:
        raise ValueError("identifier must not be empty")
    for caveat in caveats:
        _check_caveat(caveat)
    sig = _signature(root_key, identifier, caveats)
    return _serialize(location, identifier, caveats, sig)


def add_caveat(decoded: DecodedMacaroon, caveat: str) -> bytes:
    """Attenuate a macaroon without its root key (what a gRPC client does
    when it appends `preimage=<hex>`)."""
    _check_caveat(caveat)
    sig = _hmac(decoded.signature, caveat.encode("utf-8"))
    caveats = (*decoded.caveats, caveat)
    return _serialize(decoded.location, decoded.identifier, caveats, sig)


def signature_valid(root_key: bytes, decoded: DecodedMacaroon) -> bool:
    """Recompute the HMAC chain and compare in constant time."""
    expected = _signature(root_key, decoded.identifier, decoded.caveats)
    return hmac.compare_digest(expected, decoded.signature)


def encode_b64(raw: bytes) -> str:
    """Standard base64 with padding: the form Go's StdEncoding requires."""
    return base64.b64encode(raw).decode("ascii")


def encode_hex(raw: bytes) -> str:
    return raw.hex()


def _as_text(text: str | bytes) -> str:
    if isinstance(text, bytes):
        try:
            return text.decode("ascii")
        except UnicodeDecodeError:
            raise malformed("macaroon text is not ASCII") from None
    return text


def decode(text: str | bytes) -> DecodedMacaroon:
    """Strictly decode a base64 macaroon (see the module docstring)."""
    s = _as_text(text)
    if not s:
        raise malformed("empty macaroon")
    if len(s) > MAX_B64_LEN:
        raise malformed(f"macaroon text longer than {MAX_B64_LEN} characters")
    if _STD_B64.fullmatch(s):
        altchars = b"+/"
    elif _URL_B64.fullmatch(s):
        altchars = b"-_"
    else:
        raise malformed("macaroon is not base64 (bad character or mixed alphabets)")
    unpadded = s.rstrip("=")
    if len(unpadded) % 4 == 1:
        raise malformed("macaroon base64 has an impossible length")
    padded = unpadded + "=" * (-len(unpadded) % 4)
    if s != unpadded and s != padded:
        raise malformed("macaroon base64 has wrong padding")
    try:
        raw = base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise malformed("macaroon is not valid base64") from None
    if base64.b64encode(raw, altchars=altchars).decode("ascii") != padded:
        raise malformed("macaroon base64 is not canonical")
    return decode_raw(raw)


def decode_hex(text: str | bytes) -> DecodedMacaroon:
    """Strictly decode a hex macaroon (gRPC `Macaroon` metadata form)."""
    s = _as_text(text)
    if not s:
        raise malformed("empty macaroon")
    if len(s) > MAX_HEX_LEN:
        raise malformed(f"macaroon text longer than {MAX_HEX_LEN} characters")
    if len(s) % 2 or not _HEX.fullmatch(s):
        raise malformed("macaroon is not valid hex")
    return decode_raw(bytes.fromhex(s))


class _Reader:
    """Cursor over V2 packets; every failure is `malformed`."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.pos = 0

    def uvarint(self) -> int:
        n = 0
        for shift in range(0, 28, 7):
            if self.pos >= len(self.raw):
                raise malformed("macaroon truncated")
            byte = self.raw[self.pos]
            self.pos += 1
            n |= (byte & 0x7F) << shift
            if byte < 0x80:
                if byte == 0 and shift:
                    raise malformed("macaroon has a non-minimal varint")
                return n
        raise malformed("macaroon varint too long")

    def section(self) -> list[tuple[int, bytes]]:
        """Packets up to the next EOS, field types strictly increasing."""
        packets: list[tuple[int, bytes]] = []
        previous = _EOS
        while True:
            field_type = self.uvarint()
            if field_type == _EOS:
                return packets
            if field_type <= previous:
                raise malformed("macaroon fields out of order")
            previous = field_type
            packets.append((field_type, self.payload()))

    def payload(self) -> bytes:
        length = self.uvarint()
        end = self.pos + length
        if end > len(self.raw):
            raise malformed("macaroon field extends past end of data")
        data = self.raw[self.pos : end]
        self.pos = end
        return data


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed(f"macaroon {what} is not UTF-8") from None


def decode_raw(raw: bytes) -> DecodedMacaroon:
    """Parse V2 binary: header, first-party caveats, signature, nothing after."""
    if not raw:
        raise malformed("empty macaroon")
    if len(raw) > MAX_RAW_LEN:
        raise malformed(f"macaroon larger than {MAX_RAW_LEN} bytes")
    if raw[0] != _V2:
        if chr(raw[0]) in "0123456789abcdef":
            raise malformed("V1 macaroons are not supported")
        raise malformed("not a V2 binary macaroon")
    reader = _Reader(raw)
    reader.pos = 1
    header = reader.section()
    location = ""
    if header and header[0][0] == _FIELD_LOCATION:
        location = _utf8(header[0][1], "location")
        header = header[1:]
    if len(header) != 1 or header[0][0] != _FIELD_IDENTIFIER or not header[0][1]:
        raise malformed("macaroon header must hold exactly one identifier")
    identifier = header[0][1]
    caveats: list[str] = []
    while True:
        section = reader.section()
        if not section:
            break
        kinds = [field_type for field_type, _ in section]
        if _FIELD_LOCATION in kinds or _FIELD_VID in kinds:
            raise malformed("third-party caveats are not supported")
        if kinds != [_FIELD_IDENTIFIER] or not section[0][1]:
            raise malformed("macaroon caveat must hold exactly one identifier")
        caveats.append(_utf8(section[0][1], "caveat"))
    if reader.uvarint() != _FIELD_SIGNATURE:
        raise malformed("macaroon signature missing")
    signature = reader.payload()
    if len(signature) != SIGNATURE_LEN:
        raise malformed(f"macaroon signature must be {SIGNATURE_LEN} bytes")
    if reader.pos != len(raw):
        raise malformed("trailing bytes after macaroon")
    return DecodedMacaroon(raw, location, identifier, tuple(caveats), signature)
