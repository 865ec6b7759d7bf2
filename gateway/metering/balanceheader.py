"""The balance told to the buyer on every metered answer: the `L402-Balance` header.

    L402-Balance: 995904;unit=tokens;reserved=4096

An RFC 8941 structured-field Item: an Integer (units still available to new
requests once this request's reservation is held) with the parameters `unit`
(a Token: `tokens`, `requests`, `bytes`, `msat` or the route's own name) and,
on a forwarded answer, `reserved` (what this request holds until it settles).
What remains after this answer is between the value and value + reserved;
the next answer tells the settled figure. An exhausted balance's 402 carries
the header with the units left and no `reserved`.

Headers leave before the body, so a streamed answer cannot report its own
debit: the value is known at admission. It is not a secret (it is the buyer's
own balance) and it is never logged with the credential that unlocks it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

BALANCE_HEADER = "L402-Balance"
_TOKEN = re.compile(r"^[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]*$")
_INTEGER = re.compile(r"^-?[0-9]{1,15}$")  # RFC 8941: at most 15 digits


class BalanceReport(NamedTuple):
    available: int
    unit: str
    reserved: int | None = None


_TOKENS: set[str] = set()  # units already checked (a handful: the routes' own)


def format_balance(available: int, unit: str, reserved: int | None = None) -> str:
    """The header value; numbers past RFC 8941's 15 digits are capped at 999999999999999."""
    if unit not in _TOKENS:
        if not _TOKEN.match(unit):
            raise ValueError(f"unit {unit!r} is not a structured-field token")
        if len(_TOKENS) < 1024:
            _TOKENS.add(unit)
    cap = 10**15 - 1
    value = f"{min(max(available, 0), cap)};unit={unit}"
    if reserved is not None:
        value += f";reserved={min(max(reserved, 0), cap)}"
    return value


def parse_balance(value: str) -> BalanceReport:
    """A buyer's reading of the header (strict: ValueError names what is wrong)."""
    parts = [p.strip(" ") for p in value.strip(" \t").split(";")]
    if not _INTEGER.match(parts[0]) or parts[0].startswith("-"):
        raise ValueError("L402-Balance: the value must be a non-negative integer")
    params: dict[str, str] = {}
    for part in parts[1:]:
        name, eq, raw = part.partition("=")
        if not eq or name in params or name not in ("unit", "reserved"):
            raise ValueError(f"L402-Balance: unexpected parameter {name!r}")
        params[name] = raw
    unit = params.get("unit")
    if unit is None or not _TOKEN.match(unit):
        raise ValueError("L402-Balance: `unit` must be a token")
    reserved = params.get("reserved")
    if reserved is not None and (not _INTEGER.match(reserved) or reserved.startswith("-")):
        raise ValueError("L402-Balance: `reserved` must be a non-negative integer")
    return BalanceReport(int(parts[0]), unit, None if reserved is None else int(reserved))
