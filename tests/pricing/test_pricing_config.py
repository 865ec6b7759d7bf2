"""`pricing:` in routes.yaml, the hook's answer rules and the header selection (no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigErrors, load_config
from gateway.config.model import PricingHook
from gateway.paywall.routes import RuntimeRoutes
from gateway.pricer.hook import MAX_ANSWER_BYTES, InvalidPrice, parse_answer
from gateway.pricer.prices import hook_headers

HEAD = """\
lnd: {tls_cert: c, macaroon: m}
routes:
  - name: dyn
    path: ^/dyn/
    upstream: http://127.0.0.1:9
"""


def load(tmp_path: Path, body: str) -> PricingHook | None:
    path = tmp_path / "routes.yaml"
    path.write_text(HEAD + body)
    return (
        load_config(path, check_files=False, environ={"HOOK": "pricing.internal"})
        .routes.routes[0]
        .pricing
    )


def errors(tmp_path: Path, body: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load(tmp_path, body)
    return [f"{e.line}: {e.field}: {e.message}" for e in info.value.errors]


def test_a_complete_section(tmp_path: Path) -> None:
    hook = load(
        tmp_path,
        "    pricing:\n"
        "      url: http://${HOOK}:8091/price\n"
        "      timeout_seconds: 0.5\n"
        "      fallback_price_sats: 10\n"
        "      max_price_msats: 250000\n"
        "      headers: [X-Model, content-length]\n",
    )
    assert hook == PricingHook(
        "http://pricing.internal:8091/price", 10_000, 250_000, 0.5, ("x-model", "content-length")
    )


def test_defaults_and_the_mint_request(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        HEAD + "    pricing: {url: 'https://p.internal/', fallback_price_msats: 1, "
        "max_price_sats: 1}\n"
    )
    config = load_config(path, check_files=False)
    route = config.routes.routes[0]
    assert route.pricing == PricingHook("https://p.internal/", 1, 1000, 1.0, ())
    assert not route.is_free
    assert route.price_msat == 1  # the fallback: what the prebuilt mint request carries
    mint = RuntimeRoutes.from_config(config).by_name["dyn"].mint
    assert mint is not None
    assert mint.price_msat == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "    price_sats: 5\n    pricing: {url: 'http://p/', fallback_price_sats: 1, "
            "max_price_sats: 2}\n",
            "6: routes[0].price_sats: a route with `pricing` takes its fallback from "
            "pricing.fallback_price_*",
        ),
        ("    pricing:\n", "6: routes[0].pricing: expected a mapping"),
        (
            "    pricing: {url: 'ftp://p/', fallback_price_sats: 1, max_price_sats: 2}\n",
            "6: routes[0].pricing.url: scheme must be http or https",
        ),
        (
            "    pricing: {url: 'http://u:pw@p/', fallback_price_sats: 1, max_price_sats: 2}\n",
            "6: routes[0].pricing.url: no credentials in the URL",
        ),
        (
            "    pricing: {url: 'http://p/?key=1', fallback_price_sats: 1, max_price_sats: 2}\n",
            "6: routes[0].pricing.url: no query or fragment allowed",
        ),
        (
            "    pricing: {url: 'http://p/', max_price_sats: 2}\n",
            "6: routes[0].pricing.fallback_price_sats: exactly one of fallback_price_sats / "
            "fallback_price_msats is required",
        ),
        (
            "    pricing: {url: 'http://p/', fallback_price_sats: 0, max_price_sats: 2}\n",
            "6: routes[0].pricing.fallback_price_sats: must be >= 1",
        ),
        (
            "    pricing: {url: 'http://p/', fallback_price_sats: 1}\n",
            "6: routes[0].pricing.max_price_sats: exactly one of max_price_sats / "
            "max_price_msats is required",
        ),
        (
            "    pricing: {url: 'http://p/', fallback_price_sats: 3, max_price_sats: 2}\n",
            "6: routes[0].pricing.fallback_price_msats: larger than the max price",
        ),
        (
            "    pricing: {url: 'http://p/', fallback_price_sats: 1, max_price_sats: 2, "
            "timeout_seconds: 30}\n",
            "6: routes[0].pricing.timeout_seconds: at most 10 (it delays a 402)",
        ),
        (
            "    pricing: {url: 'http://p/', fallback_price_sats: 1, max_price_sats: 2, "
            "headers: [Authorization]}\n",
            "6: routes[0].pricing.headers[0]: a credential header is never sent to the hook",
        ),
        (
            "    pricing: {url: 'http://p/', fallback_price_sats: 1, max_price_sats: 2, "
            "headers: [cookie]}\n",
            "6: routes[0].pricing.headers[0]: a credential header is never sent to the hook",
        ),
        (
            "    pricing: {url: 'http://p/', fallback_price_sats: 1, max_price_sats: 2, "
            "headers: [X-A, x-a]}\n",
            "6: routes[0].pricing.headers[1]: duplicate header",
        ),
        (
            "    pricing: {url: 'http://p/', fallback_price_sats: 1, max_price_sats: 2, "
            "color: red}\n",
            "6: routes[0].pricing.color: unknown key",
        ),
    ],
)
def test_errors_name_line_and_field(tmp_path: Path, body: str, expected: str) -> None:
    assert expected in errors(tmp_path, body)


def test_at_most_sixteen_header_names(tmp_path: Path) -> None:
    names = ", ".join(f"X-H{i}" for i in range(17))
    body = (
        "    pricing: {url: 'http://p/', fallback_price_sats: 1, max_price_sats: 2, "
        f"headers: [{names}]}}\n"
    )
    assert errors(tmp_path, body) == ["6: routes[0].pricing.headers: at most 16 header names"]


def test_parse_answer() -> None:
    assert parse_answer(b'{"price_msats": 21000, "note": "peak"}', 21000) == 21000
    for raw, why in [
        (b"", "not JSON"),
        (b"[1]", "object"),
        (b'{"price_msats": 1.0}', "not an integer"),
        (b'{"price_msats": false}', "not an integer"),
        (b'{"price_msats": 0}', "outside 1..5"),
        (b'{"price_msats": 6}', "outside 1..5"),
        (b'{"price_msats": 1' + b"0" * 400 + b"}", "outside 1..5"),
        (b" " * (MAX_ANSWER_BYTES + 1), "larger than"),
        (b"[" * 4000, "not JSON"),
    ]:
        with pytest.raises(InvalidPrice, match=why):
            parse_answer(raw, 5)


def test_hook_headers_are_selected_joined_and_cut() -> None:
    headers = [("X-Model", "a"), ("Other", "b"), ("x-model", "c"), ("X-Long", "z" * 2000)]
    assert hook_headers(headers, ("x-long", "x-model", "x-absent")) == (
        ("x-long", "z" * 1024),
        ("x-model", "a, c"),
    )
    assert hook_headers(headers, ()) == ()
