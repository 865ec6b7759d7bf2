"""The operator's OpenAPI document served with prices: operations matched to routes by the
gateway's own matching (path with example parameters + method), re-read on reload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from gateway.config.model import DISCOVERY_MANIFEST_PATH, DISCOVERY_OPENAPI_PATH
from tests.pricing.harness import gateway_with
from tests.server.harness import InProcess

OPENAPI_YAML = """\
openapi: 3.1.0
info: {title: Example API, version: "2.0"}
security:
  - apiKey: []
components:
  securitySchemes:
    apiKey: {type: apiKey, in: header, name: X-Api-Key}
paths:
  /paid/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer}}
    get:
      operationId: getPaid
      responses:
        200: {description: the item}
  /resource:
    get:
      operationId: readResource
      security: []
      responses: {"200": {description: ok}}
    post:
      operationId: writeResource
      responses: {"201": {description: created}}
  /free/{name}:
    get:
      operationId: freeThing
      parameters:
        - {name: name, in: path, required: true, example: hello}
      responses: {"200": {description: ok}}
  /cap:
    get:
      operationId: capped
      responses: {"200": {description: ok}}
  /once:
    post:
      operationId: once
      responses:
        "402": {description: the operator's own words}
"""


def _with_openapi(text: str, name: str = "openapi.yaml") -> Any:
    def edit(doc: dict[str, Any], upstream: str) -> None:
        doc["discovery"] = {"openapi_file": name, "provider_name": "Example"}

    return edit


async def _get(gw: InProcess, path: str) -> tuple[int, Any, Any]:
    async with gw.session.get(gw.url(path)) as r:
        return r.status, r.headers, await r.json()


async def test_operations_carry_their_routes_prices(tmp_path: Path) -> None:
    (tmp_path / "openapi.yaml").write_text(OPENAPI_YAML)
    async with gateway_with(tmp_path, _with_openapi(OPENAPI_YAML)) as gw:
        status, headers, doc = await _get(gw, DISCOVERY_OPENAPI_PATH)
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["ETag"].startswith('"')
        paths = doc["paths"]

        paid = paths["/paid/{id}"]["get"]
        assert paid["x-l402-pricing"] == {"model": "fixed", "price_msat": 10_000}
        assert paid["x-l402-service"] == "paid"
        assert paid["x-l402-route"] == "paid"
        assert paid["x-l402-token-mode"] == "reusable"
        # The document's global requirement, AND-ed with L402.
        assert paid["security"] == [{"apiKey": [], "L402": []}]
        assert set(paid["responses"]) == {"200", "402"}  # YAML's 200: became "200"
        assert "WWW-Authenticate" in paid["responses"]["402"]["headers"]

        read = paths["/resource"]["get"]
        assert read["x-l402-pricing"]["price_msat"] == 1_000
        assert read["security"] == [{"L402": []}]  # `security: []` opted out of apiKey
        # POST /resource: the route takes GET and HEAD only, so the gateway sells no POST.
        assert not any(k.startswith("x-l402") for k in paths["/resource"]["post"])
        # A free route's operation is left as the operator wrote it.
        assert (
            paths["/free/{name}"]["get"]
            == yaml.safe_load(OPENAPI_YAML)["paths"]["/free/{name}"]["get"]
        )
        cap = paths["/cap"]["get"]
        assert (cap["x-l402-capability"], cap["x-l402-pricing"]["price_msat"]) == ("write", 3_000)
        once = paths["/once"]["post"]
        assert once["x-l402-token-mode"] == "per-request"
        assert once["responses"]["402"] == {"description": "the operator's own words"}

        assert doc["info"]["title"] == "Example API"
        assert doc["info"]["x-l402-version"] == "1.0"
        assert doc["info"]["x-l402-provider"] == {"name": "Example"}
        assert doc["components"]["securitySchemes"]["L402"]["x-l402-scheme"] == "L402"
        assert doc["components"]["securitySchemes"]["apiKey"]["name"] == "X-Api-Key"
        assert set(doc["x-l402-caveats"]) == {"services", "preimage", "cap_capabilities"}

        # The manifest points at it, in its body and a Link header.
        _, headers, manifest = await _get(gw, DISCOVERY_MANIFEST_PATH)
        assert manifest["openapi"] == DISCOVERY_OPENAPI_PATH
        assert headers["Link"] == f'<{DISCOVERY_OPENAPI_PATH}>; rel="service-desc"'
        assert gw.invoices.calls == []
        assert gw.seen.requests == []


async def test_a_json_document_and_reload_rereads_it(tmp_path: Path) -> None:
    document = yaml.safe_load(OPENAPI_YAML)
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    async with gateway_with(tmp_path, _with_openapi("", "openapi.json")) as gw:
        _, first_headers, first = await _get(gw, DISCOVERY_OPENAPI_PATH)
        assert first["paths"]["/cap"]["get"]["x-l402-pricing"]["price_msat"] == 3_000
        document["paths"]["/cap"]["get"]["summary"] = "now documented"
        (tmp_path / "openapi.json").write_text(json.dumps(document))
        assert gw.server.reload(tmp_path / "routes.yaml")
        _, headers, after = await _get(gw, DISCOVERY_OPENAPI_PATH)
        assert after["paths"]["/cap"]["get"]["summary"] == "now documented"
        assert headers["ETag"] != first_headers["ETag"]
        # A broken file on reload keeps the running document.
        (tmp_path / "openapi.json").write_text('{"openapi": "3.1.0", "paths": [}')
        assert not gw.server.reload(tmp_path / "routes.yaml")
        _, kept_headers, _ = await _get(gw, DISCOVERY_OPENAPI_PATH)
        assert kept_headers["ETag"] == headers["ETag"]


async def test_without_an_openapi_file_the_path_belongs_to_the_routes(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any], upstream: str) -> None:
        doc["routes"].append({"name": "all", "path": "^/", "upstream": upstream, "price_sats": 1})

    async with gateway_with(tmp_path, edit) as gw:
        challenge = await gw.challenge(DISCOVERY_OPENAPI_PATH)
        assert challenge["route"] == "all"
