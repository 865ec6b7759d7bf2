"""No secret reaches the log at DEBUG over HTTP/2 (gRPC), the h2/hpack libraries included.

A real gateway logs exactly as `l402-gateway serve --log-level debug
--log-file` does, in front of a real grpcio upstream. Calls carry every kind of
credential header a client sends (Authorization of the L402, Bearer and
Payment schemes, Proxy-Authorization, Cookie, an API key, the L402 macaroon
headers), and the route adds the operator's own `upstream_headers` secret on
the way to the upstream. The log file is then searched for every secret.

Before: hpack's DEBUG records ("Decoded (b'authorization', b'Bearer ...')",
the encoded header blocks) printed every one of them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from gateway.config import load_config
from gateway.observability import logsetup as logs
from gateway.observability.redaction import forget_secrets
from gateway.regtest.processes import free_port
from gateway.server.serve import GatewayServer
from tests.grpc.rig import SERVICE, UpstreamState, method, start_upstream
from tests.logs.support import Secrets, decoded_text, leaks, read_log, unreachable_lnd


@pytest.fixture
async def grpc_upstream() -> AsyncIterator[tuple[UpstreamState, int]]:
    state = UpstreamState()
    server, port = await start_upstream(state)
    yield state, port
    await server.stop(grace=None)


@pytest.fixture(autouse=True)
def no_registered_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


async def test_debug_logs_of_http2_calls_carry_no_secret(
    tmp_path: Path, grpc_upstream: tuple[UpstreamState, int], secret: Secrets
) -> None:
    state, port = grpc_upstream
    bearer = "BeArEr" + secrets.token_urlsafe(24)
    payment = "PaYmEnT" + secrets.token_urlsafe(48)
    cookie = "CoOkIe" + secrets.token_urlsafe(16)
    proxy = "PrOxY" + secrets.token_urlsafe(16)
    api_key = "ApIkEy" + secrets.token_urlsafe(16)
    operator = "OpErAtOr" + secrets.token_urlsafe(16)  # the route's upstream_headers value
    upstream = f"http://127.0.0.1:{port}"
    document = {
        "listen": {"public": f"127.0.0.1:{free_port()}", "admin": f"127.0.0.1:{free_port()}"},
        "lnd": unreachable_lnd(tmp_path),
        "store": {"url": f"sqlite:///{tmp_path / 'tokens.db'}"},
        "routes": [
            {"name": "priced", "path": "^/test.Priced/", "upstream": upstream, "price_sats": 10,
             "path_rewrite": {"pattern": "^/test.Priced/", "replacement": f"/{SERVICE}/"}},
            {"name": "free", "path": f"^/{SERVICE}/", "upstream": upstream, "price_sats": 0,
             "upstream_headers": {"X-Upstream-Key": operator}},
        ],
    }  # fmt: skip
    config = tmp_path / "routes.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    log_path = tmp_path / "gateway.log"
    logs.configure("debug", log_file=log_path)  # what `serve --log-level debug` does
    assert logging.getLogger().isEnabledFor(logging.DEBUG)
    server = GatewayServer(load_config(config))
    await server.start()
    try:
        metadata = (
            ("authorization", secret.credential),
            ("authorization", f"Bearer {bearer}"),
            ("authorization", f"Payment {payment}"),
            ("proxy-authorization", f"Basic {proxy}"),
            ("cookie", f"session={cookie}"),
            ("x-api-key", api_key),
            ("grpc-metadata-macaroon", secret.hex_macaroon),
            ("token", secret.hex_macaroon),
        )
        target = f"127.0.0.1:{server.public_port}"
        async with grpc.aio.insecure_channel(target) as channel:
            reply = await channel.unary_unary(method("Unary"))(b"hi", metadata=metadata)
            assert reply == b"echo:hi"  # forwarded over HTTP/2, upstream_headers added
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary("/test.Priced/Unary")(b"hi", metadata=metadata)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE  # LND is unreachable
    finally:
        await server.stop()
        logs.unconfigure()
    assert state.metadata[-1]["x-upstream-key"] == operator  # the secret did travel
    text, lines = read_log(log_path)
    assert any(line.get("path") == method("Unary") for line in lines)  # the call was logged
    hunted = {
        **secret.named(),
        "bearer token": bearer,
        "payment credential": payment,
        "cookie": cookie,
        "proxy credential": proxy,
        "api key": api_key,
        "operator's upstream header": operator,
    }
    assert leaks(text, hunted) == []
    assert leaks(decoded_text(lines), hunted) == []
