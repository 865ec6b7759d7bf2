"""Loading a route file is a pure step: the check-config command, the embed settings and the
Aperture converter load routes without pulling in the HTTP stack or the proxy (issue 9: config
no longer imports proxy). Run in a fresh interpreter so other tests' imports do not mask it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_loading_a_route_file_imports_neither_aiohttp_nor_the_proxy(tmp_path: Path) -> None:
    config = tmp_path / "routes.yaml"
    for name in ("tls.cert", "invoice.macaroon"):
        (tmp_path / name).write_bytes(b"x")
    config.write_text(
        "lnd: {host: '127.0.0.1:10009', tls_cert: tls.cert, macaroon: invoice.macaroon}\n"
        "routes:\n"
        "  - {name: a, path: '^/a$', upstream: 'http://127.0.0.1:9', price_sats: 10}\n"
    )
    code = (
        "import json, sys\n"
        "from gateway.config import load_config\n"
        f"table = load_config({str(config)!r})\n"
        "loaded = [m for m in sys.modules if m == 'aiohttp' or m.startswith('aiohttp.')\n"
        "          or m.startswith('gateway.proxy') or m.startswith('gateway.server')]\n"
        "print(json.dumps({'routes': [r.name for r in table.routes.routes], 'loaded': loaded}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["routes"] == ["a"]
    assert result["loaded"] == []
