"""No byte of a request's credential, query string or userinfo reaches the log.

Each variant is sent as raw bytes over a real socket to a real gateway whose
logging is configured exactly as `l402-gateway serve --log-file` configures
it; the log file is then searched for every secret (any 12-character run of
the macaroon in base64, url-safe base64 and hex, of the preimage, of the query
secret, of a userinfo password), both as written and with JSON escapes undone.

Before gateway.observability.redaction existed, aiohttp's "Error handling request" line
carried the raw header or request line of every parser-error variant here
(full macaroon and preimage, full query strings), and a client-chosen
`X-Request-Id` carried whatever the client put in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.logs.conftest import StartGateway
from tests.logs.support import (
    FREE,
    PRICED,
    Secrets,
    decoded_text,
    exchange,
    leaks,
    read_log,
    status_of,
)

PARSER_ERRORS = {
    "BadHttpMessage",
    "BadStatusLine",
    "BadHttpMethod",
    "LineTooLong",
    "InvalidHeader",
    "InvalidURLError",
    "TransferEncodingError",
    "ContentLengthError",
}


@dataclass(frozen=True)
class Variant:
    name: str
    build: Callable[[Secrets], bytes | tuple[bytes, ...]]  # a tuple: one step per answer
    # What the gateway visibly does with it, so each case proves it was exercised:
    status: int | None  # the answer's status (None: the connection is just closed)
    logged: str  # "parser" (aiohttp logs a parser error), "access" (our access line), "none"
    half_close: bool = False


def req(head: str, body: bytes = b"") -> bytes:
    """Header block in latin-1 (so tests can place any byte), CRLF-terminated."""
    return head.encode("latin-1") + body


def h(s: Secrets, *lines: str, target: str = PRICED, method: str = "GET") -> str:
    return f"{method} {target}?k={s.query} HTTP/1.1\r\nHost: gw\r\n" + "".join(
        line + "\r\n" for line in lines
    )


PAD = "x" * 9000  # beyond aiohttp's 8190-byte line and field limits

VARIANTS = [
    Variant(
        "space before colon",
        lambda s: req(h(s, f"Authorization : {s.credential}") + "\r\n"),
        400,
        "parser",
    ),
    Variant(
        "tab before colon",
        lambda s: req(h(s, f"Authorization\t: {s.credential}") + "\r\n"),
        400,
        "parser",
    ),
    Variant(
        "control byte in value",
        lambda s: req(h(s, f"Authorization: {s.credential}\x01") + "\r\n"),
        400,
        "parser",
    ),
    Variant(
        "bare CR in value",
        lambda s: req(h(s, f"Authorization: {s.credential}\rX-Next: 1") + "\r\n"),
        400,
        "parser",
    ),
    Variant(
        "NUL in value",
        lambda s: req(h(s, f"Authorization: {s.credential}\x00") + "\r\n"),
        400,
        "parser",
    ),
    Variant(
        "obs-fold continuation line",
        lambda s: req(h(s, "Authorization: L402", f" {s.macaroon}:{s.preimage}") + "\r\n"),
        400,
        "parser",
    ),
    Variant(
        "malformed request line",
        lambda s: req(f"GET {PRICED}?k={s.query} {s.credential}\r\nHost: gw\r\n\r\n"),
        400,
        "parser",
    ),
    Variant(
        "request line with NUL",
        lambda s: req(f"GET {PRICED}?k={s.query}\x00{s.preimage} HTTP/1.1\r\nHost: gw\r\n\r\n"),
        400,
        "parser",
    ),
    Variant(
        "over-long header line",
        lambda s: req(h(s, f"X-Long: {s.credential}{PAD}") + "\r\n"),
        431,
        "parser",
    ),
    Variant(
        "over-long request line",
        lambda s: req(
            f"GET {PRICED}?k={s.query}&c={s.macaroon}:{s.preimage}&pad={PAD} HTTP/1.1\r\n"
            "Host: gw\r\n\r\n"
        ),
        414,
        "parser",
    ),
    Variant(
        "too many headers",
        lambda s: req(h(s, *(f"X-H{i}: {s.credential}" for i in range(200))) + "\r\n"),
        400,
        "parser",
    ),
    Variant(
        "invalid method, first request",  # aiohttp logs this one at debug level only
        lambda s: req(h(s, f"Authorization: {s.credential}", method="G@T") + "\r\n"),
        400,
        "none",
    ),
    Variant(
        "invalid method after a valid request",
        lambda s: (
            req(f"GET {FREE}/ok HTTP/1.1\r\nHost: gw\r\n\r\n"),
            req(h(s, f"Authorization: {s.credential}", method="G@T") + "\r\n"),
        ),
        400,
        "parser",
    ),
    Variant(
        "invalid HTTP version",
        lambda s: req(
            f"GET {PRICED}?k={s.query} HTTP/9.x\r\nAuthorization: {s.credential}\r\n\r\n"
        ),
        400,
        "parser",
    ),
    Variant(
        "TLS ClientHello on the plain port, after a valid request",
        lambda s: (
            req(f"GET {FREE}/ok HTTP/1.1\r\nHost: gw\r\n\r\n"),
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + s.raw_macaroon + s.preimage.encode(),
        ),
        400,
        "parser",
    ),
    Variant(
        "bad chunked encoding, priced route",
        lambda s: req(
            h(s, f"Authorization: {s.credential}", "Transfer-Encoding: chunked", method="POST")
            + f"\r\nzz{s.preimage}\r\n{s.credential}\r\n0\r\n\r\n"
        ),
        None,
        "any",
    ),
    Variant(
        "bad chunked encoding, free route (body streamed upstream)",
        lambda s: req(
            h(
                s,
                f"X-Note: {s.credential}",
                "Transfer-Encoding: chunked",
                target=FREE + "/upload",
                method="POST",
            )
            + f"\r\n5\r\nhello\r\nzz{s.preimage}\r\n{s.credential}\r\n0\r\n\r\n"
        ),
        None,
        "any",
    ),
    Variant(
        "body shorter than Content-Length, free route",
        lambda s: req(
            h(s, f"X-Note: {s.credential}", "Content-Length: 100000", target=FREE + "/upload")
            + f"\r\n{s.credential}"
        ),
        None,
        "any",
        half_close=True,
    ),
    Variant(
        "header with 8-bit bytes",
        lambda s: req(h(s, f"Authorization: {s.credential}\xff\xfe", "X-Note: caf\xe9") + "\r\n"),
        None,
        "any",
    ),
    Variant(
        "duplicate Content-Length",
        lambda s: req(
            h(s, f"Authorization: {s.credential}", "Content-Length: 5", "Content-Length: 6")
            + "\r\nhello!"
        ),
        400,
        "parser",
    ),
    Variant(
        "Content-Length and Transfer-Encoding both",
        lambda s: req(
            h(
                s,
                f"Authorization: {s.credential}",
                "Content-Length: 5",
                "Transfer-Encoding: chunked",
            )
            + "\r\n5\r\nhello\r\n0\r\n\r\n"
        ),
        400,
        "parser",
    ),
    Variant(
        "absolute-form target with userinfo",
        lambda s: req(
            f"GET http://user:{s.password}@gw{FREE}/abs?k={s.query} HTTP/1.1\r\n"
            f"Host: gw\r\nX-Note: {s.credential}\r\n\r\n"
        ),
        None,
        "any",
    ),
    Variant(
        "absolute-form target with userinfo and a bad port",
        lambda s: req(
            f"GET http://user:{s.password}@gw:99x{PRICED}?k={s.query} HTTP/1.1\r\nHost: gw\r\n\r\n"
        ),
        None,
        "any",
    ),
    Variant(
        "credentials in the query string, priced route",
        lambda s: req(
            f"GET {PRICED}?l402={s.macaroon}:{s.preimage}&k={s.query}&m={s.hex_macaroon} "
            "HTTP/1.1\r\nHost: gw\r\n\r\n"
        ),
        503,
        "access",
    ),
    Variant(
        "credentials in the query string, free route",
        lambda s: req(
            f"GET {FREE}/q?auth=L402%20{s.macaroon}:{s.preimage}&k={s.query} HTTP/1.1\r\n"
            "Host: gw\r\n\r\n"
        ),
        200,
        "access",
    ),
    Variant(
        "credential in the path, with an encoded slash",
        # the trailing %2F makes it one whatever '/' the random macaroon holds
        lambda s: req(
            f"GET {FREE}/L402%20{s.macaroon.replace('/', '%2F')}%2F:{s.preimage} HTTP/1.1\r\n"
            "Host: gw\r\n\r\n"
        ),
        400,  # an encoded '/' is refused (gateway.http.paths); the access line logs it
        "access",
    ),
    Variant(
        "credential in the path of a free route",
        lambda s: req(
            f"GET {FREE}/L402%20{s.macaroon.replace('/', '_')}:{s.preimage} HTTP/1.1\r\n"
            "Host: gw\r\n\r\n"
        ),
        200,  # served: the access line logs the path, which must come out redacted
        "access",
    ),
    Variant(
        "preimage as the client's X-Request-Id",
        lambda s: req(h(s, f"X-Request-Id: {s.preimage}", target=FREE + "/rid") + "\r\n"),
        200,
        "access",
    ),
    Variant(
        "hex macaroon in Grpc-Metadata-Macaroon, space before colon",
        lambda s: req(h(s, f"Grpc-Metadata-Macaroon : {s.hex_macaroon}") + "\r\n"),
        400,
        "parser",
    ),
    Variant(
        "credential as a header name",
        # '/' is never a token character: without it a base64 macaroon that happens to
        # hold no '/' nor '=' would be a valid header name and the request a plain one
        lambda s: req(h(s, f"{s.macaroon}/{s.preimage}: x") + "\r\n"),
        400,
        "parser",
    ),
    Variant(
        "credential in Host and X-Forwarded-For",
        lambda s: req(
            f"GET {PRICED}?k={s.query} HTTP/1.1\r\nHost: {s.preimage}.gw\r\n"
            f"X-Forwarded-For: {s.credential}\r\n\r\n"
        ),
        None,
        "any",
    ),
    Variant(
        "well-formed request with a forged credential",  # 401 + challenge: LND down, 503
        lambda s: req(h(s, f"Authorization: {s.credential}") + "\r\n"),
        503,
        "access",
    ),
    Variant(
        "HTTP/2 preface",
        lambda s: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + s.credential.encode(),
        None,
        "any",
    ),
]


@pytest.mark.parametrize("level", ["info", "debug"])
@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
async def test_no_secret_of_a_raw_request_reaches_the_log(
    start_gateway: StartGateway, secret: Secrets, variant: Variant, level: str
) -> None:
    gw = await start_gateway(level)
    built = variant.build(secret)
    steps = built if isinstance(built, tuple) else (built,)
    response = await exchange(gw.port, *steps, half_close=variant.half_close)
    if variant.status is not None:
        assert status_of(response) == variant.status, response[:200]
    # A clean request afterwards: its access line proves the log is being written
    # (the malformed request's lines were written before its answer or close).
    sentinel = await exchange(gw.port, b"GET /free/sentinel HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert status_of(sentinel) == 200

    text, lines = read_log(gw.log_path)
    assert any(line.get("path") == "/free/sentinel" for line in lines), text[-2000:]
    exercised = [line for line in lines if line.get("path") != "/free/sentinel"]
    if variant.logged == "parser":
        # The edge (gateway.server.edge) answers parser errors itself and logs their
        # type only; anything that still reaches aiohttp's logger carries exc_type.
        assert any(
            line.get("exc_type") in PARSER_ERRORS
            or (line.get("logger") == "gateway.edge" and line.get("error") in PARSER_ERRORS)
            for line in exercised
        ), text[-2000:]
    elif variant.logged == "access":
        assert any(line.get("logger") == "gateway.access" for line in exercised), text[-2000:]
    for line in exercised:  # parser errors: type and a fixed description, nothing else
        if line.get("exc_type") in PARSER_ERRORS:
            assert "details withheld" in line["exc"]
            assert "Traceback" not in line["exc"]

    found = leaks(text, secret.named()) + leaks(decoded_text(lines), secret.named())
    assert not found, f"{sorted(set(found))} leaked into the log:\n{text[-3000:]}"
