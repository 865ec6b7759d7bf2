#!/usr/bin/env python3
"""Bytes of log per million refused or failing requests.

Two measurements, both through the gateway's real logging set-up
(`gateway.observability.logsetup.configure`, as `l402-gateway serve --log-file` calls it):

1. simulated: one million requests of each kind, the exact records the gateway
   writes for them (same loggers, messages, extra fields and exceptions), with
   the logging clock advanced as if they arrived at `--rate` requests a second.
   The log volume depends on the rate and duration, not only on the count
   (limits are per second and per minute), so the figure is given per rate.
   `--unlimited` shows what the same traffic wrote without the limits.
2. real (`--real N`): N requests of each kind over real sockets to a real
   GatewayServer in this process (LND unreachable, as during an outage), the
   log file measured and projected to a million at the achieved rate.

Kinds: `rate_limited` (unpaid, 429), `lnd_down` (unpaid, LND unreachable:
503 plus an "invoice creation failed" warning), `malformed` (a header aiohttp's
parser rejects: 400 and an "Error handling request" error with its exception).

Usage: .venv/bin/python bench/log_volume.py [--rate 2000 ...] [--unlimited] [--real 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp.http_exceptions import BadHttpMessage

from gateway.observability import logsetup as logs
from gateway.observability.log_limits import AccessSampler, StormGuard

REPO = Path(__file__).resolve().parents[1]
MILLION = 1_000_000


class SimClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _access(outcome: str, status: int) -> None:
    logging.getLogger("gateway.access").info(
        "request",
        extra={
            "request_id": "5f0c4b3e9a1d4c7e8b2a6f1d0e3c9b7a",
            "route": "premium",
            "outcome": outcome,
            "status": status,
            "method": "GET",
            "path": "/ep212/premium-signal",
            "duration_ms": 0.412,
            "upstream_status": None,
            "token_id": None,
            "error": None,
        },
    )


def _rate_limited() -> None:
    _access("rate_limited", 429)


def _lnd_down() -> None:
    logging.getLogger("gateway.server.challenges").warning(
        "invoice creation failed",
        extra={"route": "premium", "lnd_code": "UNAVAILABLE", "lnd_method": "AddInvoice"},
    )
    _access("lightning_unavailable", 503)


def _malformed() -> None:
    try:
        raise BadHttpMessage("Invalid header token:\n\n    b'Authorization : L402 AgEE...'")
    except BadHttpMessage as exc:
        logging.getLogger("aiohttp.server").error(
            "Error handling request from %s", "203.0.113.7", exc_info=exc
        )


KINDS: dict[str, Callable[[], None]] = {
    "rate_limited": _rate_limited,
    "lnd_down": _lnd_down,
    "malformed": _malformed,
}


def simulate(kind: str, count: int, rate: float, unlimited: bool, workdir: Path) -> int:
    """Bytes written for `count` requests of `kind` arriving at `rate` a second."""
    path = workdir / f"sim-{kind}-{rate}-{unlimited}.log"
    clock = SimClock()
    huge = 1 << 62
    storm = StormGuard(clock=clock, burst=huge) if unlimited else StormGuard(clock=clock)
    access = AccessSampler(clock=clock, burst=huge) if unlimited else AccessSampler(clock=clock)
    logs.configure(
        "info", log_file=path, storm_guard=storm, access_sampler=access, tick_seconds=None
    )
    emit = KINDS[kind]
    step = 1.0 / rate
    for i in range(count):
        clock.now = i * step
        emit()
    clock.now = count * step
    logs.unconfigure()  # shutdown: pending counts are written
    return path.stat().st_size


async def real(count: int, workdir: Path) -> dict[str, tuple[int, float]]:
    """Per kind: (bytes, seconds) for `count` real requests over sockets."""
    from gateway.config import load_config
    from gateway.server.serve import GatewayServer
    from tests.logs.support import exchange, status_of, write_gateway_config

    results: dict[str, tuple[int, float]] = {}
    raw = {
        "rate_limited": b"GET /p HTTP/1.1\r\nHost: gw\r\n\r\n",
        "lnd_down": b"GET /p HTTP/1.1\r\nHost: gw\r\n\r\n",
        "malformed": b"GET /p HTTP/1.1\r\nHost: gw\r\nAuthorization : L402 x:y\r\n\r\n",
    }
    expected = {"rate_limited": 429, "lnd_down": 503, "malformed": 400}
    for kind in KINDS:
        directory = workdir / f"real-{kind}"
        directory.mkdir()
        # rate_limited: one challenge an hour (the first request gets 503: LND is down)
        limit = {"rate_limited": (1, 1), "lnd_down": (0, 1), "malformed": (0, 1)}[kind]
        config = write_gateway_config(
            directory, "http://127.0.0.1:9", rate_per_minute=limit[0], burst=limit[1]
        )
        log_path = directory / "gateway.log"
        logs.configure("info", log_file=log_path)
        server = GatewayServer(load_config(config))
        await server.start()
        size_before = log_path.stat().st_size
        started = time.monotonic()
        try:
            for _ in range(count):
                status = status_of(await exchange(server.public_port, raw[kind]))
                if kind == "rate_limited" and status == 503:
                    continue  # within the bucket: LND down
                if status != expected[kind]:
                    raise SystemExit(f"{kind}: got {status}, expected {expected[kind]}")
        finally:
            seconds = time.monotonic() - started
            await server.stop()
            logs.unconfigure()
        results[kind] = (log_path.stat().st_size - size_before, seconds)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, action="append", help="requests a second")
    parser.add_argument("--count", type=int, default=MILLION)
    parser.add_argument("--unlimited", action="store_true", help="also without the limits")
    parser.add_argument("--real", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    rates = args.rate or [500.0, 2000.0, 10000.0]
    with tempfile.TemporaryDirectory(prefix="log-volume-") as tmp:
        workdir = Path(tmp)
        print(f"simulated: bytes of log per {args.count:,} requests of one kind")
        for kind in KINDS:
            for rate in rates:
                size = simulate(kind, args.count, rate, False, workdir)
                seconds = args.count / rate
                line = f"  {kind:<13} at {rate:>7,.0f}/s ({seconds:>6,.0f} s): {size:>12,} B"
                if args.unlimited:
                    before = simulate(kind, args.count, rate, True, workdir)
                    line += f"   without limits: {before:>13,} B"
                print(line, flush=True)
        if args.real:
            sys.path.insert(0, str(REPO))
            print(f"real: {args.real:,} requests of each kind over loopback sockets")
            for kind, (size, seconds) in asyncio.run(real(args.real, workdir)).items():
                rate = args.real / seconds
                per_million = size * MILLION / args.real
                print(
                    f"  {kind:<13} {size:>9,} B in {seconds:5.1f} s ({rate:,.0f}/s); "
                    f"projected at that rate: {per_million:>11,.0f} B per million"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
