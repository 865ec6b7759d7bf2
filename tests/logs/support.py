"""Helpers for the logging tests: a real gateway whose LND is unreachable, raw HTTP
over real sockets, secrets to hunt for in the captured log.

The gateway is real (`GatewayServer`, SQLite, aiohttp listeners on 127.0.0.1)
and so is its upstream; only LND is absent: its address is a closed loopback
port, which the requests under test never need (an unpaid request then gets a
503, as during an LND outage).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from gateway.regtest.processes import free_port

# A throwaway self-signed certificate (no key exists anywhere): LND's TLS
# certificate must parse for the gateway to start; nothing ever connects.
UNREACHABLE_LND_CERT = """\
-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUVE4oKd//tyVExesN6KhlwKvykbUwCgYIKoZIzj0EAwIw
IjEgMB4GA1UEAwwXdW5yZWFjaGFibGUtbG5kLmludmFsaWQwIBcNMjYxMTMwMDMw
NjIzWhgPMjEyNjExMDYwMzA2MjNaMCIxIDAeBgNVBAMMF3VucmVhY2hhYmxlLWxu
ZC5pbnZhbGlkMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEy+fpguppUyzeOk9Q
7eBw5qQ/o5xsSXwAyU+cQFELfGOD0uiTbwuRHg3nVptpJQeN+FNFJDHMXOp2f4U+
3XmhiKNTMFEwHQYDVR0OBBYEFHLj+7e9ZWXD+QQSrypouxtPmzqJMB8GA1UdIwQY
MBaAFHLj+7e9ZWXD+QQSrypouxtPmzqJMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI
zj0EAwIDSAAwRQIhAL1pudWbKMla7GtFrpviVgEJTFJU/xRaVsI86kS04TAcAiAg
4A+L5qQnCAymdehugJ/+oQBw0qTBiMaJ2n0HTAbx0g==
-----END CERTIFICATE-----
"""
PRICED = "/p"
FREE = "/free"
WINDOW = 12  # no run of this many characters of a secret may appear in the log


@dataclass(frozen=True)
class Secrets:
    """A credential and other secrets, fresh per test so that no test finds another's."""

    raw_macaroon: bytes = field(
        default_factory=lambda: b"\x02\x01\x04lsat" + secrets.token_bytes(170)
    )
    preimage: str = field(default_factory=lambda: secrets.token_hex(32))
    query: str = field(default_factory=lambda: "QsEcReT" + secrets.token_urlsafe(12))
    password: str = field(default_factory=lambda: "PwSeCrEt" + secrets.token_urlsafe(12))

    @property
    def macaroon(self) -> str:
        return base64.b64encode(self.raw_macaroon).decode()

    @property
    def hex_macaroon(self) -> str:
        return self.raw_macaroon.hex()

    @property
    def credential(self) -> str:
        return f"L402 {self.macaroon}:{self.preimage}"

    def named(self) -> dict[str, str]:
        return {
            "macaroon (base64)": self.macaroon,
            "macaroon (url-safe base64)": base64.urlsafe_b64encode(self.raw_macaroon).decode(),
            "macaroon (hex)": self.hex_macaroon,
            "preimage": self.preimage,
            "query secret": self.query,
            "userinfo password": self.password,
        }


def leaks(text: str, secret_values: dict[str, str]) -> list[str]:
    """Names of the secrets of which any `WINDOW`-character run occurs in `text`."""
    found = []
    lowered = text.lower()
    for name, value in secret_values.items():
        pieces = {value[i : i + WINDOW] for i in range(0, len(value) - WINDOW + 1)}
        # hex is case-insensitive to a reader; base64 is not
        haystack = lowered if all(c in "0123456789abcdef" for c in value) else text
        if any(piece in haystack for piece in pieces):
            found.append(name)
    return found


def read_log(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """The raw text and the parsed lines (every line must be one JSON object)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    return text, lines


def decoded_text(lines: list[dict[str, Any]]) -> str:
    """All values of all lines, JSON escapes undone (a leak could hide behind \\u escapes)."""
    return "\n".join(str(v) for line in lines for v in line.values())


# -- the gateway's world ---------------------------------------------------------------


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"path": request.path, "size": len(body)})


def make_upstream() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


def unreachable_lnd(directory: Path) -> dict[str, Any]:
    """`lnd:` settings pointing at a closed loopback port."""
    cert = directory / "lnd-unreachable.cert"
    cert.write_text(UNREACHABLE_LND_CERT)
    macaroon = directory / "invoice.macaroon"
    macaroon.write_bytes(b"\x02\x01\x03lnd")  # never sent: nothing connects
    return {
        "host": f"127.0.0.1:{free_port()}",
        "tls_cert": str(cert),
        "macaroon": str(macaroon),
        "timeout_seconds": 2,
    }


def write_gateway_config(
    directory: Path,
    upstream_url: str,
    *,
    lnd: dict[str, Any] | None = None,
    rate_per_minute: int = 10_000,
    burst: int = 10_000,
) -> Path:
    """routes.yaml: one priced route (on an unreachable LND unless `lnd` is given) and
    one free route, both to `upstream_url`."""
    document = {
        "listen": {"public": f"127.0.0.1:{free_port()}", "admin": f"127.0.0.1:{free_port()}"},
        "lnd": lnd or unreachable_lnd(directory),
        "store": {"url": f"sqlite:///{directory / 'tokens.db'}"},
        "challenge_rate_limit": {"per_minute": rate_per_minute, "burst": burst},
        "routes": [
            {"name": "premium", "path": f"^{PRICED}$", "upstream": upstream_url, "price_sats": 10},
            {"name": "free", "path": f"^{FREE}(/.*)?$", "upstream": upstream_url, "price_sats": 0},
        ],
    }
    path = directory / "routes.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# -- raw HTTP over a real socket -------------------------------------------------------


async def exchange(
    port: int, *steps: bytes, half_close: bool = False, deadline: float = 15.0
) -> bytes:
    """Send each step and read one response after it; return the last response's bytes
    (b"" when the server just closed).

    Reads the status line and headers, then Content-Length bytes of body, so a
    keep-alive connection does not make the test wait for the idle timeout.
    Several steps pipeline requests on one connection, each after the previous answer.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    response = b""
    try:
        async with asyncio.timeout(deadline):
            for i, raw in enumerate(steps):
                writer.write(raw)
                await writer.drain()
                if half_close and i == len(steps) - 1:
                    writer.write_eof()
                response = await _read_response(reader)
            return response
    finally:
        writer.close()
        try:
            async with asyncio.timeout(deadline):
                await writer.wait_closed()
        except (ConnectionError, TimeoutError):
            pass


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        body = exc.partial
    return head + body


def status_of(response: bytes) -> int | None:
    parts = response.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return None
    return int(parts[1])
