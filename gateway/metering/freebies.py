"""Free requests per client per period (Aperture's `auth: freebie N`), as pure functions.

    freebies: {per_client: 5, per: day}       # hour | day | week
              # ipv4_prefix: 32, ipv6_prefix: 64 (Aperture groups /24 and /48)

An unauthenticated request to a priced route that has freebies left is
forwarded free instead of answered with a 402; the `per_client + 1`-th
request of the period gets the 402. A client is its address as the
challenge limiter sees it (after `trusted_proxies`), grouped by prefix.
Periods are fixed UTC windows (hours, days from midnight UTC, weeks from
Monday 00:00 UTC), so every gateway process and replica counts the same
period and the store can forget past ones.

Aperture counts freebies in memory per process, never resets them until a
restart, and groups IPv4 by /24 and IPv6 by /48; here the counter is in the
store (shared by processes and replicas), resets each period, and the
prefixes are settings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

PERIOD_SECONDS = {"hour": 3600, "day": 86400, "week": 7 * 86400}
_WEEK_OFFSET = 3 * 86400  # 1970-01-01 was a Thursday: weeks start on Monday
_KEYS = frozenset({"per_client", "per", "ipv4_prefix", "ipv6_prefix"})
MAX_FREEBIES = 1_000_000


class FreebiesError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"freebies.{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class FreebiePolicy:
    per_client: int
    per: str = "day"
    ipv4_prefix: int = 32
    ipv6_prefix: int = 64

    @property
    def seconds(self) -> int:
        return PERIOD_SECONDS[self.per]

    def period(self, now: float) -> int:
        """The number of the period `now` falls in (the counter's row key)."""
        shift = _WEEK_OFFSET if self.per == "week" else 0
        return int((now + shift) // self.seconds)

    def period_end(self, now: float) -> int:
        """When the period `now` falls in ends (unix seconds): when freebies come back."""
        shift = _WEEK_OFFSET if self.per == "week" else 0
        return (self.period(now) + 1) * self.seconds - shift

    def client(self, address: str) -> str:
        """The client an address counts as: its network at the configured prefix."""
        text = address.strip()
        host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return text  # not an IP (a UNIX socket peer): its own client
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        prefix = self.ipv4_prefix if ip.version == 4 else self.ipv6_prefix
        network = ipaddress.ip_network((ip, prefix), strict=False)
        return str(network)

    def key(self, route: str, address: str) -> str:
        return f"fb:{route}:{self.client(address)}"


def _int(raw: Mapping[str, object], key: str, low: int, high: int, default: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FreebiesError(key, f"must be an integer from {low} to {high}")
    return value


def parse_freebies(raw: object) -> FreebiePolicy:
    if not isinstance(raw, Mapping):
        raise FreebiesError("per_client", "freebies must be a mapping")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise FreebiesError(unknown[0], f"unknown key (known: {', '.join(sorted(_KEYS))})")
    if "per_client" not in raw:
        raise FreebiesError("per_client", "required")
    per = raw.get("per", "day")
    if per not in PERIOD_SECONDS:
        raise FreebiesError("per", "must be hour, day or week")
    return FreebiePolicy(
        per_client=_int(raw, "per_client", 1, MAX_FREEBIES, 0),
        per=str(per),
        ipv4_prefix=_int(raw, "ipv4_prefix", 8, 32, 32),
        ipv6_prefix=_int(raw, "ipv6_prefix", 16, 128, 64),
    )
