"""Embedded configuration: routes.yaml in embedded mode, and routes from code, one validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.config import load_config
from gateway.config.errors import ConfigErrors
from gateway.config.model import EMBEDDED_UPSTREAM, TokenMode
from gateway.embed import L402, LndSettings, PricedRoute
from gateway.embed.settings import build_config
from tests.embed.conftest import dummy_lnd

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, document: dict[str, object]) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def embedded_document(tmp_path: Path) -> dict[str, object]:
    lnd = dummy_lnd(tmp_path)
    return {
        "lnd": {"host": lnd.host, "tls_cert": "tls.cert", "macaroon": "invoice.macaroon"},
        "store": {"url": "sqlite:tokens.db"},
        "routes": [
            {"name": "premium", "path": "^/premium$", "price_sats": 10},
            {"name": "once", "path": "^/once$", "price_sats": 1, "token_mode": "per-request"},
        ],
    }


def test_an_embedded_file_has_routes_without_upstream(tmp_path: Path) -> None:
    seller = L402.from_config(write(tmp_path, embedded_document(tmp_path)))
    routes = seller.config.routes
    assert routes.names == ("premium", "once")
    assert {r.upstream for r in routes.routes} == {EMBEDDED_UPSTREAM}
    assert seller.config.store.url == f"sqlite://{tmp_path / 'tokens.db'}"  # beside the file
    assert not seller.running


def test_the_same_file_is_refused_by_the_proxy_for_its_missing_upstream(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_config(write(tmp_path, embedded_document(tmp_path)))
    assert "routes[0].upstream: required key is missing" in str(caught.value)


def test_the_proxys_file_is_refused_when_embedded_naming_each_proxy_only_key() -> None:
    shipped = REPO / "config" / "routes.yaml"
    with pytest.raises(ConfigErrors) as caught:
        L402.from_config(shipped, check_files=False)
    fields = {e.field for e in caught.value.errors}
    assert "routes[0].upstream" in fields
    assert all(e.file == str(shipped) and e.line > 0 for e in caught.value.errors)
    assert all("proxy-only" in e.message for e in caught.value.errors)


def test_every_proxy_only_key_is_reported_once(tmp_path: Path) -> None:
    document = embedded_document(tmp_path)
    document["listen"] = {"public": "127.0.0.1:8080"}
    document["routes"] = [
        {
            "name": "p",
            "path": "^/p$",
            "price_sats": 1,
            "upstream": "http://127.0.0.1:1",
            "upstream_ca_file": "missing.pem",
            "upstream_headers": {"X-Key": "v"},
            "path_rewrite": {"pattern": "^/p", "replacement": "/q"},
            "forward_authorization": False,
            "max_body_bytes": 10,
            "cors": {"allow_origins": ["*"]},
            "upstream_timeout_seconds": 120,  # sizes the single-use lease: kept
        }
    ]
    with pytest.raises(ConfigErrors) as caught:
        load_config(write(tmp_path, document), embedded=True)
    fields = sorted(e.field for e in caught.value.errors)
    assert fields == sorted(
        ["listen"]
        + [
            f"routes[0].{k}"
            for k in (
                "upstream",
                "upstream_ca_file",
                "upstream_headers",
                "path_rewrite",
                "forward_authorization",
                "max_body_bytes",
                "cors",
            )
        ]
    )


def test_routes_from_code_take_the_loaders_defaults_and_types(tmp_path: Path) -> None:
    config = build_config(
        [
            PricedRoute(
                "report",
                "^/report/",
                price_msats=2_500,
                methods=("get", "POST"),
                token_mode=TokenMode.PER_REQUEST,
                capabilities=["read", "write"],
                required_capability="read",
                token_validity_seconds=600,
                upstream_timeout_seconds=120,
            ),
            {"name": "raw", "path": "^/raw$", "price_sats": 0},
        ],
        lnd=LndSettings("127.0.0.1:10009", tmp_path / "tls.cert", "invoice.macaroon"),
        store_url="postgresql://shop:pa$$word@127.0.0.1/shop",
        options={"challenge_rate_limit": {"per_minute": 5}, "store": {"prune_after_days": 0}},
        base_dir=tmp_path,
        check_files=False,
    )
    report = config.routes.routes[0]
    assert (report.price_msat, report.methods) == (2_500, frozenset({"GET", "POST"}))
    assert report.single_use
    assert report.capabilities == ("read", "write")
    assert report.lease_seconds == 30 + 120 + 30
    assert report.invoice_expiry_seconds == 3600  # the file's defaults
    assert report.private_invoices
    assert config.routes.routes[1].is_free
    assert config.store.url == "postgresql://shop:pa$$word@127.0.0.1/shop"  # no ${VAR} rewriting
    assert (config.store.prune_after_days, config.challenge_rate_limit.per_minute) == (0, 5)
    assert config.lightning.tls_cert == tmp_path / "tls.cert"
    assert config.lightning.macaroon == tmp_path / "invoice.macaroon"  # relative to base_dir


def test_code_config_checks_lnd_files_like_the_file_does(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as caught:
        build_config(
            [PricedRoute("a", "^/a$", price_sats=1)],
            lnd=LndSettings("127.0.0.1:10009", tmp_path / "nope.cert", tmp_path / "nope.mac"),
            store_url="sqlite::memory:",
        )
    assert {e.field for e in caught.value.errors} == {"lnd.tls_cert", "lnd.macaroon"}


def test_code_config_refuses_values_yaml_cannot_carry_and_arguments_in_options(
    tmp_path: Path,
) -> None:
    lnd = dummy_lnd(tmp_path)
    with pytest.raises(ConfigErrors, match="plain strings, numbers"):
        build_config([PricedRoute("a", "^/a$", price_sats=object())], lnd=lnd, store_url="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pass routes as arguments"):
        build_config([], lnd=lnd, store_url="x", options={"routes": []})
    with pytest.raises(ValueError, match=r"pass store\.url as arguments"):
        build_config([], lnd=lnd, store_url="x", options={"store": {"url": "y"}})


def _readme_embed_examples() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Embed it", 1)[1].split("\n## ", 1)[0]
    return [block.split("\n", 1)[1] for block in section.split("```python")[1:]]


def test_the_readme_examples_build_what_they_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fastapi_example, aiohttp_example = (b.split("```", 1)[0] for b in _readme_embed_examples())
    compile(aiohttp_example, "README aiohttp example", "exec")  # it runs a server: compile only
    dummy_lnd(tmp_path)  # the files LndSettings names, relative to the working directory
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(fastapi_example, "README FastAPI example", "exec"), namespace)  # noqa: S102
    seller = namespace["seller"]
    assert isinstance(seller, L402)
    assert seller.config.routes.names == ("report", "generate")
    assert seller.config.store.url == f"sqlite://{tmp_path / 'l402-tokens.db'}"
