"""gRPC (HTTP/2) proxying engine: our own sans-I/O HTTP/2 wire on asyncio, both hops.

The server plugs its paid-request logic in through `Admission` and `Ticket`
(`gateway.h2engine.api`); `H2Proxy` holds the engine's state and `H2Site` serves it
on the same port as an aiohttp `AppRunner`. Design: docs/grpc.md.
"""

from gateway.h2engine.api import (
    Admission,
    FailReason,
    Forward,
    H2Target,
    Refuse,
    StreamHead,
    StreamOutcome,
    Ticket,
)
from gateway.h2engine.limits import H2Limits
from gateway.h2engine.proxy import H2Proxy
from gateway.h2engine.site import H2Site, SniffingProtocol

__all__ = [
    "Admission",
    "FailReason",
    "Forward",
    "H2Limits",
    "H2Proxy",
    "H2Site",
    "H2Target",
    "Refuse",
    "SniffingProtocol",
    "StreamHead",
    "StreamOutcome",
    "Ticket",
]
