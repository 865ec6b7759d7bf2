"""Payment-scheme offers in discovery (draft-payment-discovery-00): `x-payment-info` on the
OpenAPI operations of routes selling `payment`, in the draft's multi-offer form and nothing
but the draft's offer members; the L402 annotations and manifest only where L402 is sold.

Served by a real in-process gateway (the documents built from the running config), and the
pure builders on configurations loaded by the real loader."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from gateway.discovery.payment_offers import payment_offers

from gateway.config import load_config
from gateway.config.model import DISCOVERY_MANIFEST_PATH, DISCOVERY_OPENAPI_PATH, GatewayConfig
from gateway.discovery.documents import manifest
from tests.pricing.harness import gateway_with
from tests.server.harness import InProcess

OPENAPI = """\
openapi: 3.1.0
info: {title: Example API, version: "2.0"}
security:
  - apiKey: []
components:
  securitySchemes:
    apiKey: {type: apiKey, in: header, name: X-Api-Key}
paths:
  /paid/{id}:
    get:
      parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
      responses: {"200": {description: the item}}
  /payonly:
    post:
      responses: {"200": {description: ok}}
  /resource:
    get:
      responses: {"200": {description: ok}}
"""
# The draft's offer object: these members only, the first three required; amount a string of
# ASCII digits without leading zeros, or null (dynamic pricing).
OFFER_MEMBERS = {"intent", "method", "amount", "currency", "description"}
AMOUNT = re.compile(r"0|[1-9][0-9]*")


def check_offer(offer: dict[str, Any]) -> None:
    assert set(offer) <= OFFER_MEMBERS, offer
    assert {"intent", "method", "amount"} <= set(offer), offer
    assert offer["intent"] in ("charge", "session")
    assert offer["amount"] is None or AMOUNT.fullmatch(offer["amount"]), offer
    assert all(isinstance(offer[k], str) for k in offer if k != "amount")


def sell_payment(doc: dict[str, Any], upstream: str) -> None:
    doc["lnd"]["refund_macaroon"] = "refund.macaroon"
    doc["payment"] = {"sessions": {"enabled": True, "deposit_multiplier": 5,
                                   "idle_timeout_seconds": 120}}  # fmt: skip
    doc["discovery"] = {"openapi_file": "openapi.yaml"}
    for route in doc["routes"]:
        if route["name"] == "paid":
            route["schemes"] = ["l402", "payment"]
    doc["routes"].insert(0, {"name": "payonly", "path": "^/payonly$", "upstream": upstream,
                             "price_msats": 2_500, "schemes": ["payment"]})  # fmt: skip


async def _get(gw: InProcess, path: str) -> Any:
    async with gw.session.get(gw.url(path)) as r:
        assert r.status == 200
        return await r.json()


async def test_the_served_documents_carry_the_payment_offers(tmp_path: Path) -> None:
    (tmp_path / "openapi.yaml").write_text(OPENAPI)
    (tmp_path / "refund.macaroon").write_text("not read by discovery\n")
    async with gateway_with(tmp_path, sell_payment) as gw:
        doc = await _get(gw, DISCOVERY_OPENAPI_PATH)
        paid = doc["paths"]["/paid/{id}"]["get"]
        charge, session = paid["x-payment-info"]["offers"]
        assert {k: charge[k] for k in ("intent", "method", "amount", "currency")} == {
            "intent": "charge", "method": "lightning", "amount": "10", "currency": "sat",
        }  # fmt: skip
        assert (session["intent"], session["amount"], session["currency"]) == (
            "session", "10", "sat",
        )  # fmt: skip
        assert "deposit of 50 sat (5 requests)" in session["description"]
        assert "after 120 s idle" in session["description"]
        assert paid["x-l402-pricing"] == {"model": "fixed", "price_msat": 10_000}  # still L402
        assert paid["security"] == [{"apiKey": [], "L402": []}]
        assert "Payment" in paid["responses"]["402"]["description"]
        assert "L402" in paid["responses"]["402"]["description"]

        only = doc["paths"]["/payonly"]["post"]
        assert [o["intent"] for o in only["x-payment-info"]["offers"]] == ["charge", "session"]
        assert only["x-payment-info"]["offers"][0]["amount"] == "3"  # 2500 msat, rounded up
        assert not any(k.startswith("x-l402") for k in only)  # L402 cannot buy it
        assert "security" not in only  # nothing AND-ed into the document's own requirement
        assert "L402" not in only["responses"]["402"]["description"]
        assert "x-payment-info" not in doc["paths"]["/resource"]["get"]  # sells L402 only
        for operation in (paid, only):
            for offer in operation["x-payment-info"]["offers"]:
                check_offer(offer)

        listed = await _get(gw, DISCOVERY_MANIFEST_PATH)
        resources = {r["route"]: r for s in listed["services"] for r in s["resources"]}
        assert "payonly" not in resources  # the L402 manifest lists what L402 can buy
        assert resources["paid"]["schemes"] == ["l402", "payment"]
        assert resources["paid"]["payment_offers"] == paid["x-payment-info"]["offers"]
        assert "schemes" not in resources["reads"]  # L402-only routes are as before
        assert gw.invoices.calls == []  # discovery mints nothing


def loaded(
    tmp_path: Path, payment: dict[str, Any] | None, *routes: dict[str, Any]
) -> GatewayConfig:
    doc: dict[str, Any] = {
        "lnd": {"tls_cert": "tls.cert", "macaroon": "invoice.macaroon",
                "refund_macaroon": "refund.macaroon"},
        "routes": list(routes),
    }  # fmt: skip
    if payment is not None:
        doc["payment"] = payment
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_config(path, check_files=False)


def test_offers_follow_the_sessions_setting_and_hooked_prices(tmp_path: Path) -> None:
    fixed = {"name": "fixed", "path": "^/f$", "upstream": "http://127.0.0.1:9",
             "price_msats": 1_001, "schemes": ["payment"]}  # fmt: skip
    hooked = {"name": "hooked", "path": "^/h$", "upstream": "http://127.0.0.1:9",
              "schemes": ["l402", "payment"],
              "pricing": {"url": "http://127.0.0.1:9/price", "fallback_price_sats": 4,
                          "max_price_msats": 50_500}}  # fmt: skip
    free = {"name": "free", "path": "^/free$", "upstream": "http://127.0.0.1:9",
            "price_sats": 0, "schemes": ["l402", "payment"]}  # fmt: skip
    charges_only = loaded(tmp_path, None, fixed, hooked, free)
    routes = {r.name: r for r in charges_only.routes.routes}
    (offer,) = payment_offers(routes["fixed"], charges_only.payment)
    assert (offer["intent"], offer["amount"]) == ("charge", "2")  # as the challenge rounds
    (dynamic,) = payment_offers(routes["hooked"], charges_only.payment)
    assert dynamic["amount"] is None
    assert "51 sat at most" in dynamic["description"]
    assert "4 sat when the pricing service does not answer" in dynamic["description"]
    assert payment_offers(routes["free"], charges_only.payment) == []

    with_sessions = loaded(tmp_path, {"sessions": {"enabled": True}}, fixed, hooked)
    routes = {r.name: r for r in with_sessions.routes.routes}
    charge, session = payment_offers(routes["fixed"], with_sessions.payment)
    assert (session["amount"], charge["amount"]) == ("2", "2")
    assert "deposit of 40 sat (20 requests)" in session["description"]  # the default x20
    _, hooked_session = payment_offers(routes["hooked"], with_sessions.payment)
    assert hooked_session["amount"] is None
    for route in routes.values():
        for one in payment_offers(route, with_sessions.payment):
            check_offer(one)


def test_the_pure_builders_without_a_payment_config_are_as_before(tmp_path: Path) -> None:
    """Callers that pass no PaymentConfig (embedders of the builders) get charges only."""
    config = loaded(
        tmp_path,
        {"sessions": {"enabled": True}},
        {"name": "both", "path": "^/b$", "upstream": "http://127.0.0.1:9", "price_sats": 7,
         "schemes": ["l402", "payment"]},
    )  # fmt: skip
    listed = manifest(config.discovery, config.routes, "any")
    (resource,) = listed["services"][0]["resources"]
    assert [o["intent"] for o in resource["payment_offers"]] == ["charge"]
    with_sessions = manifest(config.discovery, config.routes, "any", config.payment)
    (resource,) = with_sessions["services"][0]["resources"]
    assert [o["intent"] for o in resource["payment_offers"]] == ["charge", "session"]
