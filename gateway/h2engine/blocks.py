"""Rules for received header blocks (RFC 9113 8.2, 8.3): pure checks, one pass per block.

A block that breaks them is malformed: the stream is reset with
PROTOCOL_ERROR and nothing of it reaches the Admission. Messages name the
rule, never a header value (values may be credentials).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.h2engine.grpcwire import RawHeaders

# Hop-by-hop in HTTP/1.1 and forbidden in HTTP/2 (RFC 9113 8.2.2).
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")


# Ordinary fields already found valid (a client repeats most of them in every
# request): skips the regular expressions. Bounded; credentials never enter it.
_SEEN: set[tuple[bytes, bytes]] = set()
_SEEN_LIMIT = 4096
_SECRET = frozenset(
    {b"authorization", b"proxy-authorization", b"cookie", b"macaroon", b"grpc-metadata-macaroon"}
)


class Malformed(Exception):
    """A received header block breaks HTTP/2's rules (the message names the rule only)."""


def _regular(name: bytes, value: bytes) -> None:
    if (name, value) in _SEEN:
        return
    if value and _BAD_VALUE.search(value):
        raise Malformed("header value with control characters or surrounding whitespace")
    if not _NAME.match(name):
        raise Malformed("header name is empty, upper-case or not a token")
    if name in CONNECTION_SPECIFIC:
        raise Malformed("connection-specific header")
    if name == b"te" and value != b"trailers":
        raise Malformed("te other than trailers")
    if name not in _SECRET:
        if len(_SEEN) >= _SEEN_LIMIT:
            _SEEN.clear()
        _SEEN.add((name, value))


def _pseudo_value(value: bytes) -> None:
    if value and _BAD_VALUE.search(value):
        raise Malformed("header value with control characters or surrounding whitespace")


def check_request(block: Sequence[tuple[bytes, bytes]]) -> None:
    """Pseudo-headers first, known, once; :method, :scheme, :path (but CONNECT); host rules."""
    seen: set[bytes] = set()
    regular = False
    authority = host = None
    for name, value in block:
        if name[:1] == b":":
            _pseudo_value(value)
            if regular or name not in _REQUEST_PSEUDO or name in seen:
                raise Malformed("pseudo-header unknown, repeated or after a regular header")
            seen.add(name)
            if name == b":authority":
                authority = value
        else:
            regular = True
            _regular(name, value)
            if name == b"host":
                host = value
    if b":method" not in seen:
        raise Malformed("request without :method")
    method = next(v for k, v in block if k == b":method")
    if method != b"CONNECT" and (b":scheme" not in seen or b":path" not in seen):
        raise Malformed("request without :scheme or :path")
    if b":path" in seen and not next(v for k, v in block if k == b":path"):
        raise Malformed("empty :path")
    if authority is not None and host is not None and authority != host:
        raise Malformed("host and :authority differ")


def check_response(block: Sequence[tuple[bytes, bytes]]) -> int:
    """The block's :status (3 digits), after checking the response rules."""
    status = None
    regular = False
    for name, value in block:
        if name[:1] == b":":
            if regular or name != b":status" or status is not None:
                raise Malformed("pseudo-header unknown, repeated or after a regular header")
            if len(value) != 3 or not value.isdigit():
                raise Malformed(":status is not three digits")
            status = int(value)
        else:
            regular = True
            _regular(name, value)
    if status is None:
        raise Malformed("response without :status")
    return status


def check_trailers(block: RawHeaders) -> None:
    for name, value in block:
        if name[:1] == b":":
            raise Malformed("pseudo-header in trailers")
        _regular(name, value)
