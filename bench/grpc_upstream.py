#!/usr/bin/env python3
"""The gRPC upstream of bench/grpc_bench.py: a grpcio echo service, h2c or TLS, own process.

`Unary` echoes its request; `Download` streams `int(request)` messages of
1 MiB. With `--cert/--key` it listens with TLS (ALPN h2), the only way
Aperture reaches a gRPC upstream. It prints `PORT n` once listening and stops
when its standard input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

HOST = "127.0.0.1"
SERVICE = "bench.Echo"
MESSAGE = 1024 * 1024


def message() -> bytes:
    return hashlib.sha256(b"bench").digest() * (MESSAGE // 32)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throw-away key and certificate for 127.0.0.1 (openssl, EC P-256)."""
    key, cert = directory / "upstream-key.pem", directory / "upstream-cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


async def serve(pem: tuple[bytes, bytes] | None) -> None:
    payload = message()

    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def download(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for _ in range(int(request)):
            yield payload

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Download": grpc.unary_stream_rpc_method_handler(download),
        },
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    if pem is not None:
        credentials = grpc.ssl_server_credentials([pem])
        port = server.add_secure_port(f"{HOST}:0", credentials)
    else:
        port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    print(f"PORT {port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    args = parser.parse_args()
    pem = (args.key.read_bytes(), args.cert.read_bytes()) if args.cert and args.key else None
    asyncio.run(serve(pem))


if __name__ == "__main__":
    main()
