"""First-party caveats Aperture mints, and their enforcement.

Caveats are `condition=value` text. Known conditions:

- `services=<name>:<tier>[,<name>:<tier>...]`: the service must appear in
  EVERY services caveat (the effective set is the intersection, so a later
  caveat may narrow the set and a widening one has no effect). Tiers are
  parsed but not used for routing.
- `<name>_capabilities=<a,b,...>`: when the route requires a capability it
  must appear in every capabilities caveat for this service, and at least one
  such caveat must exist (fail closed: a token minted without capabilities
  does not reach a route that requires one).
- `<name>_valid_until=<unix seconds>`: the effective deadline is the minimum.
- `preimage=<hex>`: appended by gRPC clients; must equal the credential's
  preimage.

`_capabilities` / `_valid_until` caveats naming another service are ignored,
as Aperture's satisfiers ignore them. Any other condition makes verification
FAIL (`malformed`): Aperture skips conditions it has no satisfier for, but
macaroon semantics require every caveat to be satisfied, and a holder who
appended a restriction we do not understand must not get a wider token.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Sequence

from gateway.l402.errors import L402Error, Reason, malformed

SERVICES = "services"
PREIMAGE = "preimage"
CAPABILITIES_SUFFIX = "_capabilities"
VALID_UNTIL_SUFFIX = "_valid_until"

# Names end up inside caveat text, so they must not contain its separators.
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_UINT = re.compile(r"[0-9]{1,19}")
_PREIMAGE_HEX = re.compile(r"[0-9a-fA-F]{64}")


def _check_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r} must match {_NAME.pattern}")


def check_names(service: str, capabilities: Sequence[str]) -> None:
    """Raise ValueError unless the names can be carried in caveat text."""
    _check_name(service, "service name")
    for capability in capabilities:
        _check_name(capability, "capability")


def for_route(service: str, capabilities: Sequence[str], valid_until: int | None) -> list[str]:
    """The caveats minted for a route, in Aperture's order (names checked by `check_names`)."""
    caveats = [f"{SERVICES}={service}:0"]
    if capabilities:
        caveats.append(f"{service}{CAPABILITIES_SUFFIX}={','.join(capabilities)}")
    if valid_until is not None:
        if valid_until < 0:
            raise ValueError("valid_until must not be negative")
        caveats.append(f"{service}{VALID_UNTIL_SUFFIX}={valid_until}")
    return caveats


def _short(text: str) -> str:
    """A caveat condition quoted for an error detail (never a value)."""
    return repr(text[:40])


def split(caveat: str) -> tuple[str, str]:
    """`condition=value` with surrounding spaces trimmed, as Aperture does."""
    condition, sep, value = caveat.partition("=")
    if not sep or not condition.strip():
        raise malformed("caveat is not condition=value")
    return condition.strip(), value.strip()


def _services(value: str) -> set[str]:
    names: set[str] = set()
    for entry in value.split(","):
        name, sep, tier = entry.strip().partition(":")
        if not sep or not _NAME.fullmatch(name) or not _UINT.fullmatch(tier):
            raise malformed("services caveat is not name:tier[,name:tier]")
        names.add(name)
    return names


def _capabilities(value: str) -> set[str]:
    return {item.strip() for item in value.split(",") if item.strip()}


def _unix(value: str) -> int:
    if not _UINT.fullmatch(value):
        raise malformed("valid_until caveat is not unix seconds")
    return int(value)


def enforce(
    caveats: Iterable[str],
    service: str,
    required_capability: str | None,
    now: int,
    *,
    preimage: bytes | None = None,
) -> int | None:
    """Raise `L402Error` unless every caveat allows `service` at `now`.

    Returns the effective valid_until (None when the token never expires).
    `preimage` caveats are compared with `preimage` when it is given, and only
    checked for form otherwise.
    """
    allowed: set[str] | None = None
    capabilities: set[str] | None = None
    valid_until: int | None = None
    own_capabilities = service + CAPABILITIES_SUFFIX
    own_valid_until = service + VALID_UNTIL_SUFFIX
    for caveat in caveats:
        condition, value = split(caveat)
        if condition == SERVICES:
            names = _services(value)
            allowed = names if allowed is None else allowed & names
        elif condition == own_capabilities:
            caps = _capabilities(value)
            capabilities = caps if capabilities is None else capabilities & caps
        elif condition == own_valid_until:
            deadline = _unix(value)
            valid_until = deadline if valid_until is None else min(valid_until, deadline)
        elif condition == PREIMAGE:
            if not _PREIMAGE_HEX.fullmatch(value):
                raise malformed("preimage caveat is not 64 hex characters")
            if preimage is not None and not hmac.compare_digest(bytes.fromhex(value), preimage):
                raise L402Error(Reason.PREIMAGE_MISMATCH, "preimage caveat does not match")
        elif condition.endswith(CAPABILITIES_SUFFIX):
            _capabilities(value)  # another service's restriction: not ours to enforce
        elif condition.endswith(VALID_UNTIL_SUFFIX):
            _unix(value)
        else:
            raise malformed(f"unknown caveat condition {_short(condition)}")
    if allowed is None or service not in allowed:
        raise L402Error(Reason.WRONG_ROUTE, f"token is not valid for service {service!r}")
    if valid_until is not None and now > valid_until:
        raise L402Error(Reason.EXPIRED, f"token expired at {valid_until}")
    if required_capability is not None and (
        capabilities is None or required_capability not in capabilities
    ):
        raise L402Error(
            Reason.MISSING_CAPABILITY, f"token lacks capability {required_capability!r}"
        )
    return valid_until
