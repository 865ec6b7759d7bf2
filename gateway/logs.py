"""Structured JSON logs: one object per line, with the request's id, route and outcome.

Only whitelisted `extra` fields are emitted, so a careless `extra={...}` cannot
leak a macaroon, preimage or root key into the logs.
"""

from __future__ import annotations

import json
import logging
import sys
import time

SAFE_FIELDS = (
    "request_id",
    "route",
    "outcome",
    "status",
    "method",
    "path",
    "duration_ms",
    "upstream_status",
    "client_ip",
    "token_id",
    "lnd_code",
    "lnd_method",
    "settle_index",
    "amt_paid_msat",
    "config",
    "error",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in SAFE_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").disabled = True  # our access log carries more
