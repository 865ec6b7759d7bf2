"""The access record: one line per request, whatever carried it (HTTP/1.1, WebSocket, HTTP/2).

A transport creates one `AccessRecord` when a request arrives and calls
`done(status)` once when it ends; everything in between (the paywall's
decision, the `Sale` of an admitted request, a refusal) fills its fields.
So there is one writer of access lines and one list of their fields.

Fields are secret-free by construction: the normal path (never the query),
the token id (never the macaroon or preimage), reasons and codes.
"""

from __future__ import annotations

import itertools
import logging
import os
import time

from gateway.l402.errors import L402Error
from gateway.observability import access_sink
from gateway.paywall.refusals import PaymentRequired, Refusal

access_log = logging.getLogger("gateway.access")

# Request ids: a random per-process prefix and a counter. Unique per process and
# across processes (the prefix), and far cheaper than uuid4 (a syscall per request).
_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)

PATH_LIMIT = 512  # characters of a path kept in the log


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):010x}"


class AccessRecord:
    """What one request did, written as one `gateway.access` line by `done`."""

    __slots__ = (
        "error",
        "method",
        "outcome",
        "path",
        "request_id",
        "route",
        "started",
        "token_id",
        "upstream_status",
        "written",
    )

    def __init__(self, request_id: str, method: str, raw_path: str) -> None:
        self.request_id = request_id
        self.method = method
        self.path = raw_path  # replaced by the normal form once the path is located
        self.route: str | None = None
        self.outcome: str | None = None
        self.token_id: str | None = None
        self.upstream_status: int | None = None
        self.error: str | None = None  # why the request did not end normally (secret-free)
        self.started = time.perf_counter()
        self.written = False

    def refused(self, exc: Refusal) -> None:
        """The request was answered with a refusal (its reason is the outcome)."""
        self.outcome = exc.reason
        if isinstance(exc, PaymentRequired) and exc.refused is not None:
            self.credential_refused(exc.refused)

    def credential_refused(self, exc: L402Error) -> None:
        self.error = exc.detail  # secret-free by the core's contract

    def done(self, status: int) -> None:
        """Write the line (once: a second call, e.g. from a cleanup path, is ignored)."""
        if self.written:
            return
        self.written = True
        fields = {
            "request_id": self.request_id,
            "route": self.route,
            "outcome": self.outcome,
            "status": status,
            "method": self.method,
            "path": self.path[:PATH_LIMIT],
            "duration_ms": round((time.perf_counter() - self.started) * 1000, 3),
            "upstream_status": self.upstream_status,
            "token_id": self.token_id,
            "error": self.error,
        }
        if not access_sink.write(fields):  # the gateway's own log set-up takes it directly
            access_log.info("request", extra=fields)
