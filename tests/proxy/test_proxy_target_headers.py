"""ProxyTarget validation, URL building and the header rules, without sockets."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config.model import PathRewrite, Route
from gateway.proxy import ProxyTarget, make_ssl_context
from gateway.proxy.headers import downstream_response_headers, upstream_request_headers


def _target(upstream: str, **route: Any) -> ProxyTarget:
    rewrite = route.pop("path_rewrite", None)
    if rewrite is not None:
        route["path_rewrite"] = PathRewrite(re.compile(rewrite[0]), rewrite[1])
    return ProxyTarget.for_route(
        Route(name="r", path=re.compile("^/"), upstream=upstream, price_msat=0, **route)
    )


def test_url_keeps_raw_path_and_query() -> None:
    target = _target("http://up.example:8080/base/")
    url = target.url_for("/a%3Bb/c", "x=1&y=%20z&x=2")
    assert str(url) == "http://up.example:8080/base/a%3Bb/c?x=1&y=%20z&x=2"


def test_path_rewrite_applied_once() -> None:
    target = _target("https://up.example", path_rewrite=(r"^/ep212/", "/v2/ep212/"))
    url = target.url_for("/ep212/premium-signal", "q=/ep212/")
    assert str(url) == "https://up.example/v2/ep212/premium-signal?q=/ep212/"


def test_rewrite_to_relative_path_gets_leading_slash() -> None:
    target = _target("http://up.example", path_rewrite=(r"^/api/", ""))
    assert target.url_for("/api/x", "").raw_path == "/x"


def test_target_takes_the_route_settings() -> None:
    target = _target(
        "http://up.example",
        upstream_timeout_seconds=7.0,
        request_body_timeout_seconds=3.0,
        max_body_bytes=99,
        upstream_headers=(("X-Api-Key", "k"),),
    )
    assert (target.timeout_seconds, target.body_timeout_seconds, target.max_body_bytes) == (
        7.0,
        3.0,
        99,
    )
    assert target.host_header == "up.example"


def test_target_extra_headers_are_frozen() -> None:
    target = _target("http://up.example", upstream_headers=(("X-Api-Key", "k"),))
    assert target.extra_headers["X-Api-Key"] == "k"
    with pytest.raises(TypeError):
        target.extra_headers["X-New"] = "v"  # type: ignore[index]


def test_make_ssl_context(tmp_path: Path) -> None:
    assert make_ssl_context(True, None) is True
    assert make_ssl_context(False, None) is False
    with pytest.raises(ValueError, match="disabled"):
        make_ssl_context(False, "/nonexistent.pem")
    with pytest.raises(ValueError, match="cannot load CA file"):
        make_ssl_context(True, str(tmp_path / "missing.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ValueError, match="cannot load CA file"):
        make_ssl_context(True, str(garbage))


def test_make_ssl_context_with_ca_file() -> None:
    cafile = ssl.get_default_verify_paths().cafile
    if cafile is None:
        pytest.skip("no system CA bundle to load")
    context = make_ssl_context(True, cafile)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED


def _headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_upstream_headers_replace_credentials_and_drop_hops() -> None:
    incoming = _headers(
        ("Host", "gateway.example"),
        ("Authorization", "L402 client:one"),
        ("authorization", "LSAT client:two"),
        ("Grpc-Metadata-Macaroon", "abcd"),
        ("Macaroon", "abcd"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X-T"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic x"),
        ("Expect", "100-continue"),
        ("Forwarded", "for=6.6.6.6"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("Accept", "application/json"),
        ("X-Multi", "a"),
        ("X-Multi", "b"),
    )
    out = upstream_request_headers(
        incoming,
        host="up.example:8080",
        authorization="L402 mac:pre",
        forwarded_for="203.0.113.9, 127.0.0.1",
        forwarded_proto="https",
        forwarded_host="gateway.example",
        extra={"X-Api-Key": "k"},
    )
    assert out.getall("Authorization") == ["L402 mac:pre"]
    assert out.getall("Host") == ["up.example:8080"]
    assert out.getall("X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
    assert out["X-Forwarded-Proto"] == "https"
    assert out["X-Forwarded-Host"] == "gateway.example"
    assert out["X-Api-Key"] == "k"
    assert out["Accept"] == "application/json"
    assert out.getall("X-Multi") == ["a", "b"]
    for dropped in (
        "Grpc-Metadata-Macaroon",
        "Macaroon",
        "Connection",
        "X-Hop",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Authorization",
        "Expect",
        "Forwarded",
    ):
        assert dropped not in out, dropped


def test_upstream_headers_without_authorization() -> None:
    out = upstream_request_headers(
        _headers(("Authorization", "L402 a:b")),
        host="up",
        authorization=None,
        forwarded_for="127.0.0.1",
        forwarded_proto="http",
        forwarded_host=None,
        extra={},
    )
    assert "Authorization" not in out
    assert "X-Forwarded-Host" not in out


def test_downstream_headers() -> None:
    out = downstream_response_headers(
        _headers(
            ("Connection", "X-Resp-Hop"),
            ("X-Resp-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authenticate", "Basic"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "12"),
            ("Content-Encoding", "gzip"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        )
    )
    assert list(out.items()) == [
        ("Content-Length", "12"),
        ("Content-Encoding", "gzip"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]
