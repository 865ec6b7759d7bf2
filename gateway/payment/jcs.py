"""RFC 8785 JSON Canonicalization Scheme, and the strict JSON reader under it.

The challenge id is an HMAC over the base64url of the request's JCS bytes, so
two implementations agree on an id only if they agree on every byte of the
canonical form. The rules that naive implementations get wrong, each pinned
by Aperture's cross-implementation vectors:

- member names sort by UTF-16 code units, not code points or UTF-8 bytes
  (U+10000 sorts before U+E000);
- strings escape only `"`, `\\`, and U+0000..U+001F (`\\b \\f \\n \\r \\t`
  shorthands, else lowercase `\\u00xx`); `<`, `>`, `&`, U+2028, U+2029 and
  DEL pass through (ECMAScript's JSON.stringify, not Go's encoding/json);
- numbers are IEEE-754 doubles printed as ECMAScript prints them: the
  shortest round-tripping digits, positional for exponents in (-7, 21],
  exponential (`1e+21`, `1e-7`) otherwise, `-0` as `0`; so an integer above
  2^53 in JSON TEXT is rounded (36028797018963968 -> 36028797018963970:
  `canonicalize_text`).

A Python `int` handed to `canonicalize` is written exactly, digits as they
are: within 2^53 that is the JCS form; beyond it the value is outside I-JSON
(which RFC 8785 presumes) and rounding it would change a number a receipt
carries (`refundSats` is an int64, and Aperture's vectors pin it exactly).

`loads` is the strict reader every decoder in this package uses: it refuses
duplicate member names (two readers could pick different values), NaN and
Infinity, lone surrogates (not I-JSON, not encodable as UTF-8), and keeps
integers exact (a receipt's `refundSats` may exceed 2^53).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.payment.errors import PaymentAuthError, Reason

JSONValue = Any  # None | bool | int | float | str | list[JSONValue] | dict[str, JSONValue]

_SHORTHAND = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
MAX_DEPTH = 64


def _bad(detail: str) -> PaymentAuthError:
    return PaymentAuthError(Reason.MALFORMED_JSON, detail)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise _bad("duplicate member name")
        out[name] = value
    return out


def _constant(name: str) -> Any:
    raise _bad(f"{name} is not JSON")


def _check_strings(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise _bad("nested too deeply")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise _bad("number out of range")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad("string holds a lone surrogate") from None


def loads(data: bytes | str) -> JSONValue:
    """Parse JSON strictly (see module docstring); raises MALFORMED_JSON."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("not UTF-8") from None
    try:
        value = json.loads(data, object_pairs_hook=_pairs, parse_constant=_constant)
    except PaymentAuthError:
        raise
    except (ValueError, RecursionError):
        raise _bad("not valid JSON") from None
    _check_strings(value)
    return value


def _number(value: float) -> str:
    """ECMAScript Number::toString for a finite double."""
    if not math.isfinite(value):
        raise _bad("NaN and Infinity have no JSON form")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    digits, _, exponent_text = repr(abs(value)).partition("e")
    exponent = int(exponent_text) if exponent_text else 0
    whole, _, fraction = digits.partition(".")
    mantissa = (whole + fraction).lstrip("0")
    # repr gives d.ddd[e±x] or ddd.ddd; n = position of the decimal point after
    # the first significant digit, as in ECMA-262 Number::toString (value = 0.m x 10^n).
    point = len(whole) + exponent
    if whole == "0":
        stripped = fraction.lstrip("0")
        point = exponent - (len(fraction) - len(stripped))
    mantissa = mantissa.rstrip("0") or "0"
    k, n = len(mantissa), point
    if k <= n <= 21:
        return sign + mantissa + "0" * (n - k)
    if 0 < n <= 21:
        return sign + mantissa[:n] + "." + mantissa[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + mantissa
    exp = n - 1
    exp_text = f"+{exp}" if exp >= 0 else str(exp)
    if k == 1:
        return f"{sign}{mantissa}e{exp_text}"
    return f"{sign}{mantissa[0]}.{mantissa[1:]}e{exp_text}"


def _string(text: str, out: list[str]) -> None:
    out.append('"')
    for ch in text:
        escaped = _SHORTHAND.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')


def _utf16_key(name: str) -> bytes:
    return name.encode("utf-16-be", "surrogatepass")


def _write(value: JSONValue, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _bad("nested too deeply")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))  # exact: see module docstring
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, str):
        _check_text(value)
        _string(value, out)
    elif isinstance(value, Mapping):
        out.append("{")
        names = sorted(value, key=_utf16_key)
        for index, name in enumerate(names):
            if not isinstance(name, str):
                raise _bad("member names must be strings")
            if index:
                out.append(",")
            _check_text(name)
            _string(name, out)
            out.append(":")
            _write(value[name], out, depth + 1)
        out.append("}")
    elif isinstance(value, Sequence):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out, depth + 1)
        out.append("]")
    else:
        raise _bad(f"{type(value).__name__} has no JSON form")


def canonicalize(value: JSONValue) -> bytes:
    """The RFC 8785 bytes of a Python JSON value (Python ints are written exactly)."""
    out: list[str] = []
    _write(value, out, 0)
    return "".join(out).encode("utf-8")


def canonicalize_text(data: bytes | str) -> bytes:
    """Canonicalize JSON text: every number is read as a double, as RFC 8785 requires."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("not UTF-8") from None
    try:
        value = json.loads(
            data, object_pairs_hook=_pairs, parse_constant=_constant, parse_int=float
        )
    except PaymentAuthError:
        raise
    except (ValueError, RecursionError):
        raise _bad("not valid JSON") from None
    _check_strings(value)
    return canonicalize(value)
