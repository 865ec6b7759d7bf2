"""An Aperture service's `dynamicprice`, `ratelimits` and `auth: freebie N` -> our route keys.

- `dynamicprice: {enabled, grpcaddress, insecure, tlscertpath, metered}` ->
  `pricing: {grpc, tls_cert, metered, ...}`: the same pricer (meterd, or the
  operator's own) is asked the same questions (docs/metering.md). Aperture
  has no price bound; ours is required, so `max_price_sats` is Aperture's own
  maximum (lower it). Not metered, the fallback is the service's static price
  (Aperture fails the request instead). A pricer Aperture reached over TLS
  with the system's CAs (no `insecure`, no `tlscertpath`) is not converted:
  this gateway pins the pricer's certificate.
- `ratelimits: [{pathregexp, requests, per, burst}]` -> `rate_limits: [{path,
  requests, per, burst}]` (the same token buckets; shared on PostgreSQL).
- `auth: "freebie N"` -> `freebies: {per_client: N, per: day, ipv4_prefix:
  24, ipv6_prefix: 48}` (Aperture's grouping; its counter lasted until a
  restart, ours restarts each day).

Each value this gateway's loader would refuse is dropped with a note instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.aperture.notes import Notes
from gateway.aperture.source import Block
from gateway.metering.freebies import FreebiesError, parse_freebies
from gateway.metering.limits import LimitsError, parse_rate_rules

APERTURE_MAX_PRICE_SATS = 100_000 * 100_000_000  # proxy/service.go: maxServicePrice
DYNAMIC_KEYS = frozenset({"enabled", "grpcaddress", "insecure", "tlscertpath", "metered"})
TOKENS_NOTE = (
    "tokens Aperture sold for this service name the resource path in their services caveat "
    "and will not verify here"
)


def pricer_of(block: Block, price_sats: int, notes: Notes) -> dict[str, object] | None:
    """Our `pricing: {grpc: ...}` for an enabled `dynamicprice`, or None."""
    dynamic = block.child("dynamicprice")
    if dynamic is None:
        return None
    dynamic.report_unknown(DYNAMIC_KEYS, notes, {})
    if not dynamic.boolean("enabled"):
        return None
    where = dynamic.path("enabled")
    address = dynamic.text("grpcaddress")
    if not address:
        notes.dropped(where, "no grpcaddress: converted with the static price")
        return None
    cert = dynamic.text("tlscertpath")
    if not dynamic.boolean("insecure") and not cert:
        notes.dropped(
            where,
            "Aperture reached the pricer over TLS with the system's CAs; this gateway pins the "
            "pricer's certificate: set pricing: {grpc, tls_cert} by hand. Converted with the "
            f"static price; {TOKENS_NOTE}",
        )
        return None
    pricing: dict[str, object] = {"grpc": address}
    if not dynamic.boolean("insecure"):
        pricing["tls_cert"] = cert
    metered = dynamic.boolean("metered")
    if metered:
        pricing["metered"] = True
    else:
        pricing["fallback_price_sats"] = price_sats
    pricing["max_price_sats"] = APERTURE_MAX_PRICE_SATS
    notes.note(
        where,
        "prices from the same gRPC pricer (pricing.grpc)"
        + ("" if metered else f"; when it fails, the static price {price_sats} sat(s)")
        + "; max_price_sats is Aperture's maximum: lower it. "
        + TOKENS_NOTE.capitalize(),
    )
    return pricing


def rate_limits_of(block: Block, notes: Notes) -> list[dict[str, object]]:
    """Our `rate_limits` for Aperture's `ratelimits` (every rule this gateway accepts)."""
    raw = block.raw("ratelimits")
    if not raw:
        return []
    where = block.path("ratelimits")
    if not isinstance(raw, list):
        notes.dropped(where, "expected a list of rules; none applied")
        return []
    rules: list[dict[str, object]] = []
    for index, item in enumerate(raw):
        here = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            notes.dropped(here, "expected a mapping")
            continue
        rule: dict[str, object] = {}
        values = {str(k).lower(): v for k, v in item.items()}
        if values.get("pathregexp"):
            rule["path"] = str(values["pathregexp"])
        for key in ("requests", "per", "burst"):
            if values.get(key) is not None:
                rule[key] = values[key]
        try:
            parse_rate_rules([rule])
        except LimitsError as exc:
            notes.dropped(here, f"{exc.field.removeprefix('rate_limits[0].')}: {exc.message}")
            continue
        rules.append(rule)
    return rules


def freebies_of(block: Block, notes: Notes) -> dict[str, object] | None:
    """Our `freebies` for `auth: "freebie N"`, or None."""
    raw = block.raw("auth")
    if not isinstance(raw, str):
        return None
    parts = raw.strip().lower().split(" ")
    if len(parts) != 2 or parts[0] != "freebie" or not parts[1].isdigit():
        return None
    policy = {"per_client": int(parts[1]), "per": "day", "ipv4_prefix": 24, "ipv6_prefix": 48}
    try:
        parse_freebies(policy)
    except FreebiesError as exc:
        notes.dropped(block.path("auth"), f"{raw!r}: {exc.message}; no freebies")
        return None
    notes.note(
        block.path("auth"),
        f"{raw!r}: {parts[1]} free requests per client (/24, /48) before the 402, counted per "
        "day in the store (Aperture's counter lasted until a restart)",
    )
    return policy
