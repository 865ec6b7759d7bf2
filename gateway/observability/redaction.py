"""Scrub credentials and raw request bytes out of log text.

Two layers, both applied by the JSON formatter to every record of every logger:

1. Exceptions whose text quotes the client's raw bytes are never rendered.
   aiohttp's HTTP parser errors (`aiohttp.http_exceptions.*`: `BadHttpMessage`,
   `LineTooLong`, `InvalidHeader`, `BadStatusLine`, ...) embed the offending
   request line or header line verbatim, which is where an adversarial run found
   full macaroons, preimages and query strings. For those only the exception
   type and a fixed description are logged; their tracebacks are always the same
   frames inside the parser, so nothing useful is lost.
2. Defence in depth for everything else: anything shaped like a credential is
   replaced by `[redacted]` in messages, extra fields and traceback text:
   `L402`/`LSAT` credentials, long base64 runs (macaroons), long hex runs
   (preimages, hex macaroons), credential-bearing header values, URL userinfo
   and query strings (paths keep their path, never their query).

The patterns err on the side of redacting: a log line that lost a payment hash
is a nuisance, a log line that kept a preimage is a stolen purchase.
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # looked up in sys.modules: the worker supervisor never loads aiohttp
    from aiohttp.http_exceptions import HttpProcessingError

from gateway.l402.grammar import CREDENTIAL_HEADERS, MACAROON_HEADER, TOKEN_HEADER

REDACTED = "[redacted]"

# Fixed descriptions for aiohttp's parser errors, most specific class first
# (looked up along the exception's MRO). Never derived from the exception's text.
_PARSER_ERRORS: dict[str, str] = {
    "LineTooLong": "request line or header line too long",
    "InvalidHeader": "invalid header",
    "BadHttpMethod": "invalid request method",
    "BadStatusLine": "invalid request line",
    "InvalidURLError": "invalid request target",
    "ContentLengthError": "request body shorter than its Content-Length",
    "TransferEncodingError": "invalid transfer encoding",
    "ContentEncodingError": "invalid content encoding",
    "DecompressSizeError": "decompressed body too large",
    "PayloadEncodingError": "invalid request body encoding",
    "HttpBadRequest": "bad request",
    "BadHttpMessage": "malformed HTTP request",
    "HttpProcessingError": "HTTP processing error",
}
WITHHELD = "details withheld: aiohttp's parser errors quote the raw request"

# Credential schemes followed by whatever token they carry (one "word", or a
# quoted key=value parameter); the parameter forms' remaining values are
# caught by the key=value rule below.
_SCHEME = r"\b(?i:L402|LSAT)[ \t]+(?:[A-Za-z_]+=)?\"?[^\s\"',;\\]+"
# Header lines, key=value pairs and (name, value) reprs that carry secrets, whatever
# their shape: `Authorization: <any scheme> <token>` (L402, Bearer, Basic, Payment,
# whatever comes next), `Proxy-Authorization`, cookies, API keys and the L402
# credential headers (gateway.l402.grammar). Bare "macaroon" and "token" only when no
# word, dot or dash precedes them: operator messages name files like "lnd.macaroon".
_DOTTED = {MACAROON_HEADER, TOKEN_HEADER}  # names an operator's file names also use
_CREDENTIAL_NAMES = (
    r"(?i:\b(?:proxy-authorization|"
    + "|".join(sorted(CREDENTIAL_HEADERS - _DOTTED, key=len, reverse=True))
    + r"|preimage|root_?key|set-cookie|cookie|x-api-key|api[-_]?key|x-auth-token)\b"
    + r"|(?<![\w.-])(?:"
    + "|".join(sorted(_DOTTED))
    + r")\b)"
)
_KEYED = (
    _CREDENTIAL_NAMES
    # `: `, `=`, or the `', '` / `', b'` between a (name, value) tuple's reprs
    + r"(?P<sep>[\"']?[ \t]*(?:[:=]|,[ \t]*b?(?=[\"']))[ \t]*)(?P<quote>[\"']?)"
    # an auth scheme of any name (an RFC 9110 token), then its credential
    + r"(?:[!#$%&*+.^_`|~0-9A-Za-z-]+[ \t]+)?[^\s\"',;\\]+"
)
# Long hex runs: 32-byte preimages (64 hex), 96-hex client bugs, hex macaroons.
# 40+ keeps 32-hex request ids (uuid4().hex) readable.
_HEX = r"[0-9a-fA-F]{40,}"  # keep 40 in step with _MIN_RUN
# Long base64 (standard or url-safe) runs: macaroons. Candidates are checked by
# `_looks_random` so that file paths in tracebacks survive.
_B64 = r"[A-Za-z0-9+/_-]{40,}={0,2}"  # likewise
# URL userinfo: scheme://user:password@host
_USERINFO = r"(?<=//)[^/\s@\"'\\]+@"
# A query string after a path-ish character: everything up to whitespace/quote.
_QUERY = r"(?<=[\w/.~%-])\?[^\s\"'<>\\]+"

_PATTERN = re.compile(
    "|".join(
        f"(?P<{name}>{body})"
        for name, body in (
            ("scheme", _SCHEME),
            ("keyed", _KEYED),
            ("userinfo", _USERINFO),
            ("query", _QUERY),
            ("hex", _HEX),
            ("b64", _B64),
        )
    )
)


def _looks_random(run: str) -> bool:
    """A base64 run from random bytes mixes cases and digits; a path does not."""
    if run.count("/") * 12 > len(run):  # paths: many separators
        return False
    has_upper = has_lower = has_digit = False
    for ch in run:
        if ch.isupper():
            has_upper = True
        elif ch.islower():
            has_lower = True
        elif ch.isdigit():
            has_digit = True
    return has_upper and has_lower and has_digit


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    text = match.group(0)
    if kind == "scheme":
        return text.split(None, 1)[0] + " " + REDACTED
    if kind == "keyed":
        start = match.start("sep") - match.start(0)
        return text[:start] + match.group("sep") + match.group("quote") + REDACTED
    if kind == "userinfo":
        return REDACTED + "@"
    if kind == "query":
        return "?" + REDACTED
    if kind == "b64" and not _looks_random(text):
        # Not a secret; but a hex run may still hide inside (e.g. "x/<64 hex>").
        return _HEX_ONLY.sub(REDACTED, text)
    return REDACTED


_HEX_ONLY = re.compile(_HEX)


# Every rule needs "?", "@", one of these words, or a 40-character run (so a
# string of 40 or more characters): a cheap first look (plain `in` tests; a regex
# alternation costs more than the rest of the line) that spares the full pattern
# for the short values that make up most of an access-log line.
_TRIGGER_WORDS = (
    "l402", "lsat", "authoriz", "macaroon", "preimage", "root", "cookie", "api", "token",
)  # fmt: skip
_MIN_RUN = 40


def _may_match(text: str) -> bool:
    if len(text) >= _MIN_RUN or "?" in text or "@" in text:
        return True
    lowered = text.lower()
    for word in _TRIGGER_WORDS:  # noqa: SIM110 - any(genexpr) costs twice as much here
        if word in lowered:
            return True
    return False


# Values the operator configured as secrets (each route's `upstream_headers` values):
# replaced wherever they appear, whatever their shape. Shorter ones would redact
# ordinary words; a credential that short is no secret anyway.
MIN_SECRET_LENGTH = 6
_secrets: frozenset[str] = frozenset()
_secret_pattern: re.Pattern[str] | None = None


def register_secrets(values: Iterable[str]) -> None:
    """Redact these literal values from every log line from now on (added to those
    registered before: a value once configured stays secret after a reload)."""
    global _secrets, _secret_pattern
    wanted = _secrets | {v for v in values if len(v) >= MIN_SECRET_LENGTH}
    if wanted == _secrets:
        return
    _secrets = frozenset(wanted)
    ordered = sorted(_secrets, key=len, reverse=True)  # the longest wins an overlap
    _secret_pattern = re.compile("|".join(re.escape(v) for v in ordered))


def registered_secrets() -> frozenset[str]:
    """The values registered so far: a cache of `redact` results is valid while it holds."""
    return _secrets


def forget_secrets() -> None:
    """Tests only: drop every registered value."""
    global _secrets, _secret_pattern
    _secrets, _secret_pattern = frozenset(), None


def redact(text: str) -> str:
    """`text` with every credential-shaped substring replaced by `[redacted]`."""
    if _secret_pattern is not None:
        text = _secret_pattern.sub(REDACTED, text)
    if not _may_match(text):  # most field values
        return text
    if _PATTERN.search(text) is None:  # no allocation when nothing matches
        return text
    return _PATTERN.sub(_replace, text)


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def parser_error(exc: BaseException) -> HttpProcessingError | None:
    """The aiohttp parser error in `exc`'s cause/context chain, if there is one."""
    module = sys.modules.get("aiohttp.http_exceptions")
    if module is None:  # aiohttp is not loaded: nothing can be one of its errors
        return None
    parser_errors: type[HttpProcessingError] = module.HttpProcessingError
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, parser_errors):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe_parser_error(exc: HttpProcessingError) -> str:
    """Qualified type, status code and a fixed description; never the exception's text."""
    cls = type(exc)
    description = next(
        (_PARSER_ERRORS[k.__name__] for k in cls.__mro__ if k.__name__ in _PARSER_ERRORS),
        _PARSER_ERRORS["HttpProcessingError"],
    )
    code = exc.code if isinstance(exc.code, int) else 0
    return f"{cls.__module__}.{cls.__qualname__}: {code} {description} ({WITHHELD})"


def exception_text(exc_info: ExcInfo) -> tuple[str, str]:
    """(exception type name, safe text) for a record's `exc_info`."""
    _, exc, tb = exc_info
    cls = type(exc)
    parser = parser_error(exc)
    if parser is not None:
        parser_cls = type(parser)
        return parser_cls.__name__, describe_parser_error(parser)
    try:
        rendered = "".join(traceback.format_exception(cls, exc, tb))
    except Exception as failure:  # a hostile __str__ must not take logging down
        rendered = f"{cls.__qualname__}: (could not render: {type(failure).__qualname__})"
    return cls.__name__, redact(rendered.rstrip("\n"))
