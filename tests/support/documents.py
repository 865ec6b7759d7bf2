"""The routes.yaml skeleton of an in-process gateway: loopback listeners on free ports, an
in-memory SQLite store, no challenge rate limit, and LND files the tests never read
(`load_config(..., check_files=False)`); each harness adds its own routes."""

from __future__ import annotations

from typing import Any

from gateway.regtest.processes import free_port


def in_process_document(routes: list[dict[str, Any]], /, **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "listen": {"public": f"127.0.0.1:{free_port()}", "admin": f"127.0.0.1:{free_port()}"},
        "lnd": {"host": "127.0.0.1:1", "tls_cert": "tls.cert", "macaroon": "invoice.macaroon"},
        "store": {"url": "sqlite::memory:", "prune_after_days": 0},
        "challenge_rate_limit": {"per_minute": 0},
        "routes": routes,
    }
    doc.update(top)
    return doc
