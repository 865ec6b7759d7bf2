"""The formatter's redaction, field by field, and what it must leave alone."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadStatusLine,
    InvalidHeader,
    LineTooLong,
    TransferEncodingError,
)

from gateway.observability.logsetup import JsonFormatter
from gateway.observability.redaction import REDACTED, exception_text, redact
from tests.logs.support import Secrets, leaks


def record(
    msg: object = "m", *args: object, exc: BaseException | None = None, **extra: Any
) -> logging.LogRecord:
    rec = logging.LogRecord("gateway.test", logging.ERROR, __file__, 1, msg, args or None, None)
    if exc is not None:
        rec.exc_info = (type(exc), exc, exc.__traceback__)
    rec.__dict__.update(extra)
    return rec


def formatted(rec: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_credential_shapes_are_redacted_everywhere_in_free_text(secret: Secrets) -> None:
    s = secret
    texts = [
        f"Authorization: {s.credential}",
        f"authorization:{s.credential}",
        f"{{'Authorization': '{s.credential}'}}",
        f'L402 macaroon="{s.macaroon}", preimage="{s.preimage}"',
        f"lsat {s.macaroon}:{s.preimage}",
        f"Grpc-Metadata-Macaroon: {s.hex_macaroon}",
        f"saw {s.macaroon} and {s.preimage.upper()} and {s.hex_macaroon}",
        f"GET /p?k={s.query} HTTP/1.1",
        f"http://user:{s.password}@gw/p?k={s.query}",
        f"preimage={s.preimage[:20]}",  # a truncated preimage after its name
    ]
    for text in texts:
        out = redact(text)
        assert REDACTED in out, text
        assert not leaks(out, s.named()), (text, out)


def test_plain_operator_text_survives() -> None:
    keep = [
        "request",
        "/ep212/premium-signal",
        "config reloaded",
        "lnd.macaroon: file not found",
        "token store unavailable: database is locked",
        "0123456789abcdef0123456789abcdef",  # a uuid4().hex request id
        'File "/usr/lib/python3/dist-packages/aiohttp/web_protocol.py", line 446, in feed',
        "SubscribeInvoices: UNAVAILABLE: failed to connect to all addresses",
        "Is it ready? yes",
        "public=127.0.0.1:8080 admin=127.0.0.1:9090",
    ]
    for text in keep:
        assert redact(text) == text


def test_extra_fields_are_redacted_but_token_ids_and_numbers_are_kept(secret: Secrets) -> None:
    token_id = "ab" * 32
    out = formatted(
        record(
            "request",
            request_id=secret.preimage,  # a client-chosen X-Request-Id
            path=f"/free/{secret.macaroon}",
            error=f"saw {secret.credential}",
            config=[secret.preimage],  # not a string: rendered, then redacted
            token_id=token_id,
            status=402,
            duration_ms=1.5,
            not_whitelisted=secret.preimage,
        )
    )
    assert out["token_id"] == token_id
    assert out["status"] == 402
    assert out["duration_ms"] == 1.5
    assert "not_whitelisted" not in out
    assert out["request_id"] == REDACTED
    assert not leaks(json.dumps(out), secret.named())


def test_message_arguments_are_redacted_after_formatting(secret: Secrets) -> None:
    out = formatted(record("header was %s", f"L402 {secret.macaroon}:{secret.preimage}"))
    assert out["msg"] == f"header was L402 {REDACTED}"


PARSER_ERRORS: dict[str, Callable[[str], Exception]] = {
    "BadHttpMessage": lambda c: BadHttpMessage(f"Invalid header value char: b'{c}'"),
    "LineTooLong": lambda c: LineTooLong(c, 8190),
    "InvalidHeader": lambda c: InvalidHeader(f"Authorization : {c}".encode()),
    "BadStatusLine": lambda c: BadStatusLine(f"GET /p?k=1 {c}"),
    "TransferEncodingError": lambda c: TransferEncodingError(f"bad chunk {c}"),
}


@pytest.mark.parametrize("name", PARSER_ERRORS)
def test_parser_errors_are_type_and_fixed_text_only(name: str, secret: Secrets) -> None:
    exc = raised(PARSER_ERRORS[name](secret.credential))
    assert secret.macaroon in str(exc)  # what aiohttp would have put in the log
    out = formatted(record("Error handling request from %s", "127.0.0.1", exc=exc))
    assert out["exc_type"] == name
    assert out["exc"].startswith(f"aiohttp.http_exceptions.{name}: 400 ")
    assert "details withheld" in out["exc"]
    assert "Traceback" not in out["exc"]
    assert not leaks(json.dumps(out), secret.named())


def test_a_parser_error_anywhere_in_the_chain_withholds_the_whole_traceback(
    secret: Secrets,
) -> None:
    try:
        try:
            raise BadHttpMessage(f"b'{secret.credential}'")
        except BadHttpMessage as inner:
            raise RuntimeError("while reading the request body") from inner
    except RuntimeError as outer:
        name, text = exception_text((RuntimeError, outer, outer.__traceback__))
    assert name == "BadHttpMessage"
    assert not leaks(text, secret.named())


def test_other_tracebacks_are_kept_but_redacted(secret: Secrets) -> None:
    exc = raised(ValueError(f"bad credential {secret.credential} at /p?k={secret.query}"))
    out = formatted(record("unhandled error", exc=exc))
    assert out["exc_type"] == "ValueError"
    assert out["exc"].startswith("Traceback (most recent call last):")
    assert "test_redaction.py" in out["exc"]  # frames stay useful
    assert not leaks(json.dumps(out), secret.named())


def test_stack_info_is_redacted(secret: Secrets) -> None:
    rec = record("m")
    rec.stack_info = f"Stack (most recent call last):\n  via {secret.credential}"
    assert not leaks(json.dumps(formatted(rec)), secret.named())


def test_control_bytes_and_line_breaks_cannot_forge_lines() -> None:
    line = JsonFormatter().format(record("a\nb\r\x1b[31mc\x00\u2028d"))
    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    assert line.isascii()
    assert json.loads(line)["msg"] == "a\nb\r\x1b[31mc\x00\u2028d"


def test_a_hostile_record_yields_a_fixed_line_not_its_raw_content(secret: Secrets) -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError(secret.credential)

    for rec in (
        record("%d items", secret.preimage),  # bad %-arguments
        record(Hostile()),  # a message object whose str() raises
    ):
        out = formatted(rec)
        assert out["msg"] == "a log record could not be formatted"
        assert not leaks(json.dumps(out), secret.named())


def test_an_exception_whose_str_raises_is_still_logged(secret: Secrets) -> None:
    class Odd(Exception):
        def __str__(self) -> str:
            raise RuntimeError(secret.credential)

    name, text = exception_text((Odd, Odd(), None))
    assert name == "Odd"
    assert not leaks(text, secret.named())


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Payment sEcReTeyJjaGFsbGVuZ2UiOiJ9",
        "authorization=Bearer sEcReT-bearer",
        "Proxy-Authorization: Basic sEcReTdXNlcjp=",
        "Decoded (b'authorization', b'Payment sEcReT-payment'), consumed 40",
        "Decoded (b'cookie', b'session=sEcReT-cookie'), consumed 20",
        "('x-api-key', 'sEcReT-api-key')",
        "(b'grpc-metadata-macaroon', b'0201036c7361sEcReT')",
        "token: sEcReT-token",
        "Set-Cookie: sid=sEcReT-set-cookie; HttpOnly",
    ],
)
def test_credential_headers_of_any_scheme_and_shape_are_redacted(text: str) -> None:
    assert "sEcReT" not in redact(text)
    assert REDACTED in redact(text)


def test_operator_messages_naming_credential_files_survive() -> None:
    text = "lnd.macaroon: file not found; tokens list: 3 rows"
    assert redact(text) == text


def test_registered_upstream_secrets_are_redacted_wherever_they_appear() -> None:
    from gateway.observability.redaction import forget_secrets, register_secrets

    try:
        register_secrets(["Op3rator-Secret-Value", "short"])
        assert redact("upstream said Op3rator-Secret-Value!") == f"upstream said {REDACTED}!"
        assert redact("a short word") == "a short word"  # under 6 characters: not registered
    finally:
        forget_secrets()
    assert redact("Op3rator-Secret-Value") == "Op3rator-Secret-Value"
