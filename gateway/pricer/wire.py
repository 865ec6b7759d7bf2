"""The request as a pricer sees it: `http_request_text`, built once, without credentials.

Aperture sends its pricer the request line, the headers and at most 64 KiB of
the body (Go's `httputil.DumpRequest` plus a body prefix); meterd reads the
body back with an HTTP parser, falling back to "everything after the first
blank line". This builds the same shape with these differences, on purpose:

- credentials never leave the gateway (`Authorization`, `Proxy-Authorization`,
  `Cookie`, the macaroon headers): the pricer prices requests, it does not
  need the buyer's proof of payment;
- hop-by-hop and framing headers are dropped, and `Content-Length` is the
  length of the prefix actually sent, so the pricer's HTTP parser reads the
  prefix as the whole body instead of failing on a cut one;
- a header field carrying CR or LF is dropped (it could forge lines).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PRICER_BODY_LIMIT = 64 * 1024  # Aperture's serialization cap
_DROPPED = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "macaroon",
        "grpc-metadata-macaroon",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


@dataclass(frozen=True, slots=True)
class PricedRequest:
    """What the pricer calls carry about a request: its path and its text."""

    path: str
    text: str


def request_text(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes = b"",
) -> str:
    """Request line, headers (minus the dropped ones), blank line, body prefix (64 KiB)."""
    prefix = body[:PRICER_BODY_LIMIT]
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in headers:
        if name.lower() in _DROPPED or any(c in name + value for c in "\r\n"):
            continue
        lines.append(f"{name}: {value}")
    if prefix:
        lines.append(f"Content-Length: {len(prefix)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    # Protobuf strings are UTF-8: a body that is not (or a prefix cut inside a
    # character) gets U+FFFD where its bytes were not text.
    return head + prefix.decode("utf-8", errors="replace")


def priced_request(
    method: str, path: str, query: str, headers: Iterable[tuple[str, str]], body: bytes = b""
) -> PricedRequest:
    target = f"{path}?{query}" if query else path
    return PricedRequest(path, request_text(method, target, headers, body))
