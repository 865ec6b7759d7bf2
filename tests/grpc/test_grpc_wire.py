"""Pure pieces of the engine: gRPC wire helpers, header blocks, limits validation."""

from __future__ import annotations

import ssl

import pytest

from gateway.h2engine import Forward, H2Limits, H2Target, StreamHead
from gateway.h2engine.errors import BadHeaders
from gateway.h2engine.grpcwire import (
    encode_message,
    format_timeout,
    parse_timeout,
    status_of,
    trailers_only,
)
from gateway.h2engine.headers import decode_request, upstream_request
from tests.grpc.rig import RecordingTicket


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1H", 3600.0), ("2M", 120.0), ("3S", 3.0), ("250m", 0.25), ("7u", 7e-6), ("99999999n", 0.1)],
)
def test_parse_timeout(value: str, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "S", "1", "1.5S", "-1S", " 1S", "123456789S", "1s", "1SS"])
def test_parse_timeout_is_strict(value: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        parse_timeout(value)


@pytest.mark.parametrize(
    ("seconds", "value"),
    [(0.25, "250000u"), (99.9, "99900000u"), (100.0, "100000m"), (1e6, "1000000S"), (0.0, "1u")],
)
def test_format_timeout_never_longer_than_remaining(seconds: float, value: str) -> None:
    assert format_timeout(seconds) == value
    assert parse_timeout(value) <= max(seconds, 1e-6)


def test_grpc_message_is_percent_encoded_utf8() -> None:
    assert encode_message("payment required") == b"payment required"
    assert encode_message("50% off: ü\n") == b"50%25 off: %C3%BC%0A"


def test_trailers_only_block() -> None:
    block = trailers_only(13, "payment required", [(b"www-authenticate", b"L402 x")])
    assert block == [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"13"),
        (b"grpc-message", b"payment required"),
        (b"www-authenticate", b"L402 x"),
    ]
    assert status_of(block) == 13
    assert status_of([(b"grpc-status", b"x1")]) is None


def head(*headers: tuple[str, str]) -> StreamHead:
    raw = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/s/M"), (b":authority", b"a")]
    raw += [(k.encode(), v.encode("latin-1")) for k, v in headers]
    return decode_request(raw, "127.0.0.1")


def forward(
    *headers: tuple[str, str], tls: ssl.SSLContext | None = None, path: str = "/s/M"
) -> Forward:
    target = H2Target("127.0.0.1", 1, tls, "up.example:443", 1.0)
    return Forward(target, path, tuple(headers), RecordingTicket())


def test_decode_request_keeps_order_and_bytes() -> None:
    decoded = head(("x-a", "1"), ("x-b", "\xff"), ("x-a", "2"))
    assert decoded.headers == (("x-a", "1"), ("x-b", "\xff"), ("x-a", "2"))
    assert decoded.values("X-A") == ["1", "2"]
    assert (decoded.method, decoded.path, decoded.authority) == ("POST", "/s/M", "a")


def test_upstream_request_sets_pseudo_headers_and_drops_connection_headers() -> None:
    client = head(("te", "trailers"), ("content-type", "application/grpc"))
    fwd = forward(
        ("content-type", "application/grpc"),
        ("connection", "keep-alive"),
        ("host", "evil"),
        ("grpc-timeout", "1H"),
        ("X-Mixed-Case", "v"),
        tls=ssl.create_default_context(),
        path="/rewritten",
    )
    block = upstream_request(client, fwd, remaining=1.5)
    assert block == [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", b"up.example:443"),
        (b":path", b"/rewritten"),
        (b"content-type", b"application/grpc"),
        (b"x-mixed-case", b"v"),
        (b"te", b"trailers"),
        (b"grpc-timeout", b"1500000u"),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        forward(("x-a", "line\r\nbreak")),
        forward(("bad name", "v")),
        forward(("x-a", "snow ☃")),
        forward(path="no-slash"),
        forward(path="/a\nb"),
    ],
)
def test_upstream_request_refuses_what_http2_cannot_carry(bad: Forward) -> None:
    with pytest.raises(BadHeaders):
        upstream_request(head(), bad, remaining=None)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="stream_window") as caught:
        H2Limits(stream_window=1000, idle_stream_timeout=0)
    assert "idle_stream_timeout" in str(caught.value)
    assert H2Limits().upstream_connection_window == 256 * 1024 * 100


def test_credentials_are_never_indexed_upstream() -> None:
    block = upstream_request(
        head(), forward(("authorization", "L402 m:p"), ("macaroon", "ab"), ("x-a", "1")),
        remaining=None,
    )  # fmt: skip
    kinds = {name: type(item).__name__ for item in block for name in [item[0]]}
    assert kinds[b"authorization"] == "NeverIndexedHeaderTuple"
    assert kinds[b"macaroon"] == "NeverIndexedHeaderTuple"
    assert kinds[b"x-a"] == "tuple"
