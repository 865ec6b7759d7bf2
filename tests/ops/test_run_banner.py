"""What `make run` prints: the seller node's connection details and exports that paste."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gateway.regtest.network import Descriptor, NodeInfo
from gateway.rehearsal.__main__ import banner
from gateway.rehearsal.stack import SellerStack


def node(name: str, base: Path) -> NodeInfo:
    chain = base / name / "data chain"  # a space: the exports must quote
    return NodeInfo(
        name=name,
        pid=1,
        rpc=f"127.0.0.1:{10009 if name == 'seller' else 10010}",
        p2p="127.0.0.1:9735",
        lnddir=str(base / name),
        tls_cert=str(base / name / "tls.cert"),
        admin_macaroon=str(chain / "admin.macaroon"),
        invoice_macaroon=str(chain / "invoice.macaroon"),
        readonly_macaroon=str(chain / "readonly.macaroon"),
        pubkey="02" + "ab" * 32,
    )


def test_banner_names_the_seller_node_and_exports_paste(tmp_path: Path) -> None:
    seller, buyer = node("seller", tmp_path), node("buyer", tmp_path)
    desc = Descriptor(str(tmp_path), 1, "127.0.0.1:18334", "c", "u", "p", seller, buyer)
    stack = SellerStack(
        tmp_path, "http://127.0.0.1:8080", "http://127.0.0.1:8402", "http://127.0.0.1:8090",
        tmp_path / "seller" / "routes.yaml", [],
    )  # fmt: skip
    text = banner(desc, stack)
    assert f"  host        {seller.rpc}" in text
    assert f"  tls cert    {seller.tls_cert}" in text
    assert f"  macaroon    {seller.invoice_macaroon}" in text
    exports = "\n".join(line for line in text.splitlines() if line.startswith("  export "))
    shell = subprocess.run(
        ["bash", "-c", exports + '\nprintf "%s\\n" "$L402_SELLER_LND_HOST" '
         '"$L402_SELLER_LND_TLS_CERT" "$L402_SELLER_LND_MACAROON" "$L402_BUYER_LND_MACAROON" '
         '"$L402_GATEWAY_CONFIG"'],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    assert shell.stdout.splitlines() == [
        seller.rpc,
        seller.tls_cert,
        seller.invoice_macaroon,
        buyer.admin_macaroon,
        str(stack.config_path),
    ]
    assert 'tokens list --config "$L402_GATEWAY_CONFIG"' in text


def test_banner_prints_the_admin_api_calls_with_the_quoted_token_file(tmp_path: Path) -> None:
    seller, buyer = node("seller", tmp_path), node("buyer", tmp_path)
    desc = Descriptor(str(tmp_path), 1, "127.0.0.1:18334", "c", "u", "p", seller, buyer)
    token_file = tmp_path / "run dir" / "admin.token"  # a space: the curl line must quote
    stack = SellerStack(
        tmp_path, "http://127.0.0.1:8080", "http://127.0.0.1:8402", "http://127.0.0.1:8090",
        tmp_path / "seller" / "routes.yaml", [], token_file,
    )  # fmt: skip
    text = banner(desc, stack)
    assert f"bearer secret in {token_file}, mode 0600" in text
    auth = f"\"Authorization: Bearer $(cat '{token_file}')\""
    assert f"  curl -s -H {auth} 'http://127.0.0.1:8402/admin/tokens?limit=5'" in text
    assert '.venv/bin/l402-gateway tokens list --config "$L402_GATEWAY_CONFIG" --via api' in text
    assert '.venv/bin/l402-gateway mcp --config "$L402_GATEWAY_CONFIG"' in text

    stack.admin_token_file = None
    assert "Admin API: off" in banner(desc, stack)
