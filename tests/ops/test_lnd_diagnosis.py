"""When the gateway cannot sell because of its LND node, the operator is told what and why.

Against the real regtest seller: a readonly macaroon (it may read invoices but
not create them) keeps `serve` from reporting ready, with LND's own words and
the fix on /readyz and in the log, and `check-config --online` says the same;
another node's macaroon is named as not this node's;
a certificate that is not the node's is named as such; the right settings pass,
the refund macaroon included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.config import load_config
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import free_port
from gateway.server.serve import GatewayServer
from tests.ops.support import cli

pytestmark = pytest.mark.regtest


def write(tmp_path: Path, regtest: Descriptor, **lightning: Any) -> Path:
    section = {
        "host": regtest.seller.rpc,
        "tls_cert": regtest.seller.tls_cert,
        "macaroon": regtest.seller.invoice_macaroon,
    } | lightning
    document = {
        "listen": {"public": f"127.0.0.1:{free_port()}", "admin": f"127.0.0.1:{free_port()}"},
        "lightning": section,
        "store": {"url": f"sqlite:///{tmp_path / 'tokens.db'}"},
        "routes": [{"name": "a", "path": "^/a$", "upstream": "http://127.0.0.1:9/",
                    "price_sats": 1}],
    }  # fmt: skip
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def test_check_config_online_names_a_macaroon_that_cannot_mint(
    tmp_path: Path, regtest: Descriptor
) -> None:
    ran = await cli("check-config", str(write(tmp_path, regtest,
                    macaroon=regtest.seller.readonly_macaroon)), "--online")  # fmt: skip
    assert ran.code == 1, ran.out + ran.err
    assert "lightning macaroon: FAILED: the macaroon may not create invoices" in ran.out
    assert "use LND's invoice.macaroon" in ran.out
    assert "permission denied" in ran.out  # LND's own words


async def test_check_config_online_names_a_macaroon_of_another_node(
    tmp_path: Path, regtest: Descriptor
) -> None:
    """The buyer node's invoice.macaroon on the seller node: the permission is right, the
    root key is not this node's (as with a macaroon copied from another network's
    directory), and the answer says that rather than "needs invoices:write"."""
    ran = await cli("check-config", str(write(tmp_path, regtest,
                    macaroon=regtest.buyer.invoice_macaroon)), "--online")  # fmt: skip
    assert ran.code == 1, ran.out + ran.err
    assert "lightning macaroon: FAILED: the macaroon was not baked by this node" in ran.out
    assert "invoices:write" not in ran.out


async def test_check_config_online_names_a_certificate_that_is_not_the_nodes(
    tmp_path: Path, regtest: Descriptor
) -> None:
    ran = await cli("check-config", str(write(tmp_path, regtest,
                    tls_cert=regtest.buyer.tls_cert)), "--online")  # fmt: skip
    assert ran.code == 1
    assert "lightning connection: FAILED: lightning.tls_cert is not this node's certificate" in (
        ran.out
    )
    assert "ssl_transport_security" not in ran.err  # grpc's C-core INFO lines stay out


async def test_check_config_online_passes_the_right_settings(
    tmp_path: Path, regtest: Descriptor
) -> None:
    path = write(tmp_path, regtest, refund_macaroon=regtest.seller.payer_macaroon)
    ran = await cli("check-config", str(path), "--online")
    assert ran.code == 0, ran.out + ran.err
    assert "lightning macaroon: ok: may create invoices" in ran.out
    assert "lightning refund macaroon: ok: may pay refunds" in ran.out
    bad = write(tmp_path, regtest, refund_macaroon=regtest.seller.readonly_macaroon)
    refused = await cli("check-config", str(bad), "--online")
    assert refused.code == 1
    assert "the refund macaroon may not pay (it needs offchain:write)" in refused.out


async def test_a_gateway_with_a_readonly_macaroon_is_not_ready_and_says_why(
    tmp_path: Path, regtest: Descriptor
) -> None:
    config = load_config(write(tmp_path, regtest, macaroon=regtest.seller.readonly_macaroon))
    server = GatewayServer(config)
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.admin_port}/readyz") as resp,
        ):
            body = await resp.json()
            assert resp.status == 503
    finally:
        await server.stop()
    assert body["checks"]["lnd"].startswith("not ready: macaroon: the macaroon may not create")
    assert "permission denied" in body["checks"]["lnd"]
