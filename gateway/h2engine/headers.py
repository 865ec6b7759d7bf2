"""Header blocks between the wire and the engine's API (pure functions).

Values cross as ISO-8859-1 so every byte round-trips; HTTP/2 forbids
connection-specific headers (RFC 9113 8.2.2), so they never cross at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from hpack import NeverIndexedHeaderTuple

from gateway.h2engine.api import Forward, Headers, StreamHead
from gateway.h2engine.errors import BadHeaders
from gateway.h2engine.grpcwire import RawHeaders, format_timeout

# Hop-by-hop in HTTP/1.1 and forbidden in HTTP/2 requests and responses.
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# Not forwarded from a Forward: the engine sets them itself.
_ENGINE_OWNED = CONNECTION_SPECIFIC | {b"host", b"te", b"grpc-timeout", b"http2-settings"}
# Credentials: never entered in an HPACK table (RFC 7541 7.1.3), so a connection shared
# by many clients' streams upstream cannot leak one client's value to another's guesses.
SENSITIVE = frozenset(
    {b"authorization", b"proxy-authorization", b"cookie", b"macaroon", b"grpc-metadata-macaroon"}
)
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")


def decode_request(raw: Iterable[tuple[bytes, bytes]], peer: str | None) -> StreamHead:
    """The StreamHead of a request block the wire already checked (pseudo-headers first)."""
    pseudo: dict[bytes, bytes] = {}
    headers: list[tuple[str, str]] = []
    host = ""
    for name, value in raw:
        if name.startswith(b":"):
            pseudo[name] = value
            continue
        text = value.decode("latin-1")
        if name == b"host":
            host = text
        headers.append((name.decode("latin-1"), text))
    return StreamHead(
        method=pseudo.get(b":method", b"").decode("latin-1"),
        path=pseudo.get(b":path", b"").decode("latin-1"),
        authority=pseudo[b":authority"].decode("latin-1") if b":authority" in pseudo else host,
        scheme=pseudo.get(b":scheme", b"").decode("latin-1"),
        headers=tuple(headers),
        peer=peer,
    )


# Wire forms of ordinary fields already checked (the server forwards the same few
# fields on every call): skips the checks. Bounded; credentials never enter it.
_ENCODED: dict[tuple[str, str], tuple[bytes, bytes]] = {}
_ENCODED_LIMIT = 4096


def encode(headers: Headers) -> RawHeaders:
    """Wire form of API headers; BadHeaders for names or values HTTP/2 cannot carry."""
    out: RawHeaders = []
    for item in headers:
        known = _ENCODED.get(item)
        if known is not None:
            out.append(known)
            continue
        name, value = item
        try:
            raw_name = name.lower().encode("latin-1")
            raw_value = value.encode("latin-1")
        except UnicodeEncodeError:
            raise BadHeaders("header name or value outside ISO-8859-1") from None
        if not _TOKEN.match(raw_name) or _BAD_VALUE.search(raw_value):
            raise BadHeaders("header name or value HTTP/2 cannot carry")
        if raw_name in SENSITIVE:
            out.append(NeverIndexedHeaderTuple(raw_name, raw_value))
            continue
        pair = (raw_name, raw_value)
        if len(_ENCODED) >= _ENCODED_LIMIT:
            _ENCODED.clear()
        _ENCODED[item] = pair
        out.append(pair)
    return out


def upstream_request(head: StreamHead, forward: Forward, *, remaining: float | None) -> RawHeaders:
    """The request block sent upstream: pseudo-headers, the server's headers, te, grpc-timeout."""
    target = forward.target
    block: RawHeaders = [
        (b":method", _latin1(head.method)),
        (b":scheme", b"https" if target.tls is not None else b"http"),
        (b":authority", _latin1(target.authority)),
        (b":path", _latin1(forward.path)),
    ]
    if not forward.path.startswith("/") or any(_BAD_VALUE.search(v) for _, v in block):
        raise BadHeaders("upstream :path or :authority HTTP/2 cannot carry")
    block.extend(item for item in encode(forward.headers) if item[0] not in _ENGINE_OWNED)
    if any(name == "te" and value.lower() == "trailers" for name, value in head.headers):
        block.append((b"te", b"trailers"))
    if remaining is not None:
        block.append((b"grpc-timeout", format_timeout(remaining).encode("ascii")))
    return block


def _latin1(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise BadHeaders("pseudo-header outside ISO-8859-1") from None


def passthrough(raw: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """A response, trailer or refusal block as the client gets it (no connection headers)."""
    return [(name, value) for name, value in raw if name not in CONNECTION_SPECIFIC]


def first(raw: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in raw:
        if key == name:
            return value
    return None
