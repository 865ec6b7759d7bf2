"""Which settings a reload (SIGHUP, POST /admin/reload) cannot apply to a running gateway.

A reload swaps the route table and everything read through it per request
(routes, CORS, discovery, trusted proxies, `invalid_credential_status`) and
re-tunes the challenge rate limit. The settings below are read once at
start-up (listeners, the Lightning connection, the store, the admin API, the
verified-credential cache): a reload that changes one of them must say so,
one field at a time, or the operator believes a change took effect that did not.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.config.model import GatewayConfig

RESTART_ONLY = ("listen", "lightning", "store", "admin", "verified_cache_size")


def _differences(prefix: str, old: Any, new: Any) -> list[str]:
    if old == new:
        return []
    if dataclasses.is_dataclass(old) and type(old) is type(new):
        changed: list[str] = []
        for field in dataclasses.fields(old):
            changed += _differences(
                f"{prefix}.{field.name}", getattr(old, field.name), getattr(new, field.name)
            )
        return changed or [prefix]
    return [prefix]


def restart_needed(running: GatewayConfig, loaded: GatewayConfig) -> list[str]:
    """The settings (dotted, e.g. `admin.token_file`) that differ and need a restart."""
    changed: list[str] = []
    for name in RESTART_ONLY:
        changed += _differences(name, getattr(running, name), getattr(loaded, name))
    return changed
