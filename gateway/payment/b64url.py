"""Strict unpadded base64url (RFC 4648 section 5): one spelling per payload.

The scheme carries JSON in base64url three times (the challenge's `request`
and `opaque`, the credential token, the receipt). The challenge id is an HMAC
over the `request` text *as sent*, and a lenient decoder gives one payload
several accepted spellings (padding, dropped line breaks, non-zero trailing
bits: "AB" and "AA" decode alike), which defeats any check done on the text.
So `decode` accepts exactly what `encode` produces: the URL alphabet only, no
padding, no whitespace, zero trailing bits, and a length that is not 1 mod 4.

`allow_padding=True` additionally accepts the one correctly padded spelling
(the Lightning drafts say decoders MUST accept padding; Aperture does). The
gateway does not use it on the wire (see docs/payment-scheme.md, decisions);
it exists so a seller can opt in and so the conformance test can replay
Aperture's "decode accepts padding" vector.
"""

from __future__ import annotations

import base64
import binascii

from gateway.payment.errors import PaymentAuthError, Reason

_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ALPHABET = frozenset(_DIGITS)
_INDEX = {ch: value for value, ch in enumerate(_DIGITS)}


def encode(data: bytes) -> str:
    """Unpadded base64url text of `data`."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _fail(detail: str) -> PaymentAuthError:
    return PaymentAuthError(Reason.MALFORMED_BASE64URL, detail)


def decode(text: str, *, allow_padding: bool = False) -> bytes:
    """The bytes `text` encodes; refuses every spelling `encode` would not produce."""
    body = text
    if allow_padding and text.endswith("="):
        body = text.rstrip("=")
        pad = len(text) - len(body)
        if len(text) % 4 != 0 or pad > 2 or (len(body) + pad) % 4 != 0:
            raise _fail("padding does not complete a 4-character group")
        if len(body) % 4 == 0 or pad != 4 - len(body) % 4:
            raise _fail("wrong amount of padding")
    for offset, ch in enumerate(body):
        if ch not in _ALPHABET:
            raise _fail(f"character not in the base64url alphabet at offset {offset}")
    remainder = len(body) % 4
    if remainder == 1:
        raise _fail("length leaves a dangling character")
    if remainder:
        last = _INDEX[body[-1]]
        unused_bits = 4 if remainder == 2 else 2
        if last & ((1 << unused_bits) - 1):
            raise _fail("non-zero trailing bits (a non-canonical spelling)")
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):  # unreachable after the checks; kept typed
        raise _fail("not base64url") from None
