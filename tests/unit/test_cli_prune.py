"""`l402-gateway prune` argument and config checks (the LND rounds are in tests/gateway)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )


def test_prune_refuses_a_grace_period_below_one_day(tmp_path: Path) -> None:
    (tmp_path / "tls.cert").write_text("cert")
    (tmp_path / "invoice.macaroon").write_bytes(b"mac")
    config = tmp_path / "routes.yaml"
    config.write_text(
        "lnd: {tls_cert: tls.cert, macaroon: invoice.macaroon}\n"
        f"store: {{url: 'sqlite:///{tmp_path}/tokens.db'}}\n"
        "routes:\n  - {name: p, path: '^/p$', upstream: 'http://127.0.0.1:9/', price_sats: 1}\n"
    )
    out = run("prune", "--config", str(config), "--older-than-days", "0")
    assert out.returncode == 2
    assert "--older-than-days must be >= 1" in out.stderr
    assert not (tmp_path / "tokens.db").exists()  # refused before opening anything


def test_prune_refuses_a_config_without_lnd_files(tmp_path: Path) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(
        "lnd: {tls_cert: missing.cert, macaroon: missing.macaroon}\n"
        "routes:\n  - {name: p, path: '^/p$', upstream: 'http://127.0.0.1:9/', price_sats: 1}\n"
    )
    out = run("prune", "--config", str(config), "--dry-run")
    assert out.returncode == 2
    assert "lnd.tls_cert: file not found" in out.stderr
