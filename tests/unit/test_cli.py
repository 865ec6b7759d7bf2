"""The `l402-gateway` console script as an operator runs it (subprocesses, real SQLite)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from gateway.regtest.processes import free_port
from gateway.store import open_store
from gateway.store.types import SettledInvoice
from tests.store.factories import make_record

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "routes.yaml"


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def write_config(tmp_path: Path, routes: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(
        "lnd:\n"
        "  host: 127.0.0.1:10009\n"
        "  tls_cert: missing/tls.cert\n"
        "  macaroon: missing/invoice.macaroon\n"
        f"store:\n  url: sqlite:///{tmp_path}/tokens.db\n"
        "routes:\n" + routes
    )
    return path


GOOD_ROUTE = (
    "  - name: premium\n    path: '^/p$'\n    upstream: http://127.0.0.1:9/\n    price_sats: 10\n"
)


def test_shipped_config_is_valid() -> None:
    out = run("check-config", str(SHIPPED), "--skip-file-checks")
    assert out.returncode == 0, out.stderr
    assert "ep212-premium-signal" in out.stdout
    assert "10000 msat" in out.stdout
    assert "250000 msat" in out.stdout


def test_check_config_names_file_line_and_field_for_every_error(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        GOOD_ROUTE + "  - name: bad\n"
        "    path: '^/(unclosed$'\n"
        "    upstream: ftp://example.org/\n"
        "    price_sats: -1\n"
        "    colour: blue\n",
    )
    out = run("check-config", str(path), "--skip-file-checks")
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    for field in (
        "routes[1].path",
        "routes[1].upstream",
        "routes[1].price_sats",
        "routes[1].colour",
    ):
        assert any(line.startswith(f"{path}:") and f": {field}:" in line for line in lines), (
            field,
            out.stderr,
        )
    assert "not starting" in out.stderr


def test_serve_refuses_an_invalid_file_without_starting(tmp_path: Path) -> None:
    path = write_config(tmp_path, GOOD_ROUTE)  # lnd files do not exist
    out = run("serve", "--config", str(path), timeout=20)
    assert out.returncode == 2
    assert f"{path}:3: lnd.tls_cert: file not found" in out.stderr
    assert not (tmp_path / "tokens.db").exists()


async def test_report_and_revoke_against_the_store(tmp_path: Path) -> None:
    path = write_config(tmp_path, GOOD_ROUTE)
    store = await open_store(f"sqlite:///{tmp_path}/tokens.db")
    record = make_record("premium", created_at=1_790_000_000)
    try:
        await store.put_token(record)
        await store.record_settlement(
            SettledInvoice(record.payment_hash, "premium", 10_000, 1, 1_790_000_000)
        )
        await store.add_paid_requests("premium", "2026-09-21", 3)
    finally:
        await store.close()

    out = run("report", "--config", str(path), "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["days"] is None  # GET /admin/report's shape: {"days", "rows"}
    rows = body["rows"]
    assert {
        "day": "2026-09-21",
        "route": "premium",
        "settled_invoices": 1,
        "revenue_msat": 10_000,
        "paid_requests": 3,
    } in rows

    table = run("report", "--config", str(path))
    assert "premium" in table.stdout
    assert "10.000" in table.stdout

    assert run("revoke", record.token_id_hex, "--config", str(path)).returncode == 0
    again = run("revoke", record.token_id_hex, "--config", str(path))
    assert again.returncode == 1
    assert "already revoked" in again.stderr
    assert run("revoke", "not-hex", "--config", str(path)).returncode == 2


def test_unloadable_ca_file_is_reported_with_its_route_line(tmp_path: Path) -> None:
    (tmp_path / "missing").mkdir()
    (tmp_path / "missing" / "tls.cert").write_text("x")
    (tmp_path / "missing" / "invoice.macaroon").write_text("x")
    (tmp_path / "ca.pem").write_text("not a certificate")
    path = write_config(
        tmp_path,
        GOOD_ROUTE.replace("http://127.0.0.1:9/", "https://127.0.0.1:9/")
        + "    upstream_ca_file: ca.pem\n",
    )
    out = run("check-config", str(path))
    assert out.returncode == 2
    assert f"{path}:8: routes[0]: cannot load CA file" in out.stderr  # the route's line


def test_serve_with_workers_names_a_busy_port_in_one_line(tmp_path: Path) -> None:
    """The supervisor loads no configuration: its first worker finds the busy port and the
    supervisor reports it as one process would (one line, exit 1, nothing left running)."""
    (tmp_path / "tls.cert").write_text("unused\n")
    (tmp_path / "invoice.macaroon").write_text("unused\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "routes.yaml"
        path.write_text(
            f'listen: {{public: "127.0.0.1:{port}", admin: "127.0.0.1:{free_port()}"}}\n'
            "lnd: {host: 127.0.0.1:1, tls_cert: tls.cert, macaroon: invoice.macaroon}\n"
            f"store:\n  url: sqlite:///{tmp_path}/tokens.db\n"
            "routes:\n" + GOOD_ROUTE
        )
        out = run("serve", "--config", str(path), "--workers", "2", timeout=30)
    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last == (
        f"l402-gateway: cannot listen on 127.0.0.1:{port}: address already in use (another "
        "gateway or service holds it: see listen.public / listen.admin); not starting"
    )
    assert "Traceback" not in out.stderr
