"""`l402-gateway` as an operator runs it: one-line errors, hints, and the token commands
with and without a running gateway (real SQLite files, real listeners)."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import __version__
from gateway.store import open_store
from gateway.store.types import SettledInvoice
from tests.ops.support import SECRET, cli, write_secret
from tests.server.harness import in_process
from tests.store.factories import make_record

ROUTE = "  - {name: premium, path: '^/p$', upstream: 'http://127.0.0.1:9/', price_sats: 10"


def config(tmp_path: Path, route_extra: str = "", top: str = "") -> Path:
    """A routes.yaml whose store is a SQLite file in tmp_path (LND files need not exist)."""
    path = tmp_path / "routes.yaml"
    path.write_text(
        "lnd: {host: '127.0.0.1:10009', tls_cert: tls.cert, macaroon: invoice.macaroon}\n"
        f"store: {{url: 'sqlite:///{tmp_path}/tokens.db'}}\n"
        f"{top}"
        f"routes:\n{ROUTE}{route_extra}}}\n"
    )
    return path


async def seed(tmp_path: Path) -> tuple[str, str]:
    """One paid token in tmp_path/tokens.db: (token id, payment hash) in hex."""
    store = await open_store(f"sqlite:///{tmp_path}/tokens.db")
    record = make_record("premium", created_at=1_790_000_000)
    try:
        await store.put_token(record)
        await store.record_settlement(
            SettledInvoice(record.payment_hash, "premium", 10_000, 1, 1_790_000_100)
        )
    finally:
        await store.close()
    return record.token_id.hex(), record.payment_hash.hex()


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


async def test_version_and_python_dash_m() -> None:
    ran = await cli("--version")
    assert (ran.code, ran.out.strip()) == (0, f"l402-gateway {__version__}")


async def test_revoke_and_tokens_do_not_need_the_upstreams_variables(tmp_path: Path) -> None:
    """The runbook's `sudo -u l402-gateway ... revoke` path lacks the service's environment."""
    path = config(tmp_path, ", upstream_headers: {X-Api-Key: '${UPSTREAM_API_KEY}'}")
    token_id, payment_hash = await seed(tmp_path)
    assert "UPSTREAM_API_KEY" not in os.environ
    listed = await cli("tokens", "list", "--config", str(path), "--via", "store")
    assert listed.code == 0, listed.err
    assert token_id in listed.out
    assert "paid" in listed.out
    shown = await cli("tokens", "show", payment_hash, "--config", str(path))
    assert shown.code == 0, shown.err
    assert f"token_id      {token_id}" in shown.out
    assert "2026-09-21 14:15:00Z (10000 msat)" in shown.out  # paid
    report = await cli("report", "--config", str(path), "--json")
    assert report.code == 0, report.err
    assert json.loads(report.out)["rows"][0]["revenue_msat"] == 10_000
    revoked = await cli("revoke", token_id, "--config", str(path))
    assert revoked.code == 0, revoked.err
    assert "revoked via the store" in revoked.out
    # serve and check-config do need it, and say so in one line per problem
    checked = await cli("check-config", "--config", str(path), "--skip-file-checks")
    assert checked.code == 2
    assert "routes[0].upstream_headers.X-Api-Key: environment variable UPSTREAM_API_KEY" in (
        checked.err
    )


async def test_a_store_password_variable_is_needed_only_to_open_the_store(
    tmp_path: Path,
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        "lnd: {tls_cert: tls.cert, macaroon: invoice.macaroon}\n"
        "store: {url: 'postgresql://l402:${L402_TEST_PGPASSWORD}@127.0.0.1:1/l402'}\n"
        f"routes:\n{ROUTE}}}\n"
    )
    ran = await cli("tokens", "list", "--config", str(path))
    assert ran.code == 2
    line = one_line(ran.err)
    assert "store.url: environment variable L402_TEST_PGPASSWORD is not set" in line
    bad_dsn = await cli("tokens", "list", "--config", str(path), env={"L402_TEST_PGPASSWORD": "pw"})
    assert bad_dsn.code == 1
    line = one_line(bad_dsn.err)
    assert line.startswith("l402-gateway: store: cannot open it: cannot connect to PostgreSQL")
    assert "pw" not in line.replace("PostgreSQL", "")


async def test_serve_on_a_busy_port_is_one_line(tmp_path: Path, busy_port: int) -> None:
    (tmp_path / "tls.cert").write_text("x")
    (tmp_path / "invoice.macaroon").write_text("x")
    path = config(tmp_path, top=f"listen: {{public: '127.0.0.1:{busy_port}'}}\n")
    # the placeholder tls.cert makes gRPC's C core complain on stderr if the settlement
    # follower dials LND before the bind fails: not what this test is about
    ran = await cli(
        "serve", "--config", str(path), "--log-level", "error", env={"GRPC_VERBOSITY": "NONE"}
    )
    assert ran.code == 1
    assert one_line(ran.err) == (
        f"l402-gateway: cannot listen on 127.0.0.1:{busy_port}: address already in use"
        " (another gateway or service holds it: see listen.public / listen.admin); not starting"
    )
    assert "Unclosed" not in ran.err


async def test_serve_with_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "tls.cert").write_text("x")
    (tmp_path / "invoice.macaroon").write_text("x")
    path = tmp_path / "routes.yaml"
    path.write_text(
        "listen: {public: '127.0.0.1:1', admin: '127.0.0.1:2'}\n"
        "lnd: {tls_cert: tls.cert, macaroon: invoice.macaroon}\n"
        "store: {url: 'postgresql://l402:secretpw@127.0.0.1:1/l402', timeout_seconds: 2}\n"
        f"routes:\n{ROUTE}}}\n"
    )
    ran = await cli(
        "serve", "--config", str(path), "--log-level", "critical", env={"GRPC_VERBOSITY": "NONE"}
    )
    assert ran.code == 1
    line = one_line(ran.err)
    assert line.startswith("l402-gateway: store: cannot connect to PostgreSQL"), line
    assert line.endswith("; not starting")
    assert "secretpw" not in line


@pytest.mark.parametrize(
    "args",
    [
        ("tokens", "list"),
        ("revoke", "00" * 32),
        ("report",),
        ("serve",),
        ("check-config",),
        ("prune",),
    ],
)
async def test_a_missing_config_file_is_one_clear_error(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    missing = tmp_path / "nope.yaml"
    ran = await cli(*args, "--config", str(missing))
    assert ran.code == 2
    assert "Traceback" not in ran.err
    assert f"{missing}:0: cannot read: No such file or directory" in ran.err


async def test_check_config_takes_the_file_either_way(tmp_path: Path) -> None:
    path = config(tmp_path)
    for args in ((str(path),), ("--config", str(path)), ("-c", str(path))):
        ran = await cli("check-config", *args, "--skip-file-checks")
        assert ran.code == 0, (args, ran.err)
        assert f"{path}: OK, 1 route(s)" in ran.out
    ran = await cli("check-config")  # like every command: the installed file by default
    assert (ran.out + ran.err).startswith("/etc/l402-gateway/routes.yaml:")


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        (
            "hostregexp: '^a$'",
            "routes[0].hostregexp: unknown key (Aperture's `hostregexp` is `host` here)",
        ),
        (
            "pathregexp: '^/b$'",
            "routes[0].pathregexp: unknown key (Aperture's `pathregexp` is `path` here)",
        ),
        (
            "address: 'http://x/'",
            "routes[0].address: unknown key (Aperture's `address` is `upstream` here)",
        ),
        ("price: 5", "routes[0].price: unknown key (Aperture's `price` is `price_sats` here)"),
        ("prise_sats: 5", "routes[0].prise_sats: unknown key; did you mean `price_sats`?"),
        ("upstream_timout_seconds: 5", "did you mean `upstream_timeout_seconds`?"),
        ("colour: blue", "routes[0].colour: unknown key"),
    ],
)
async def test_unknown_keys_get_a_hint(tmp_path: Path, key: str, hint: str) -> None:
    path = config(tmp_path, f", {key}")
    ran = await cli("check-config", str(path), "--skip-file-checks")
    assert ran.code == 2
    assert hint in ran.err
    if key.startswith("colour"):
        assert "did you mean" not in ran.err
        assert "Aperture" not in ran.err


async def test_top_level_hints(tmp_path: Path) -> None:
    path = config(tmp_path, top="listenaddr: ':8080'\nstroe: {}\n")
    ran = await cli("check-config", str(path), "--skip-file-checks")
    assert "listenaddr: unknown key (Aperture's `listenaddr` is `listen` here)" in ran.err
    assert "stroe: unknown key; did you mean `store`?" in ran.err


async def test_admin_token_writes_an_owner_only_secret(tmp_path: Path) -> None:
    target = tmp_path / "admin.token"
    ran = await cli("admin-token", str(target))
    assert ran.code == 0, ran.err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    secret = target.read_text().strip()
    assert len(secret) == 64
    assert secret not in ran.out
    again = await cli("admin-token", str(target))
    assert again.code == 2
    assert "exists" in one_line(again.err)
    assert target.read_text().strip() == secret
    target.chmod(0o644)
    forced = await cli("admin-token", str(target), "--force")
    assert forced.code == 0
    assert target.read_text().strip() != secret
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


async def test_check_config_refuses_a_token_file_others_can_read(tmp_path: Path) -> None:
    (tmp_path / "tls.cert").write_text("x")
    (tmp_path / "invoice.macaroon").write_text("x")
    write_secret(tmp_path / "admin.token", mode=0o640)
    path = config(tmp_path, top="admin: {token_file: admin.token}\n")
    ran = await cli("check-config", str(path))
    assert ran.code == 2
    assert "admin.token_file: readable by group or others (mode 0640); chmod 600 it" in ran.err
    assert SECRET not in ran.err
    write_secret(tmp_path / "admin.token", "short")
    ran = await cli("check-config", str(path))
    assert "admin.token_file: holds 5 characters, at least 32 needed" in ran.err


async def test_token_commands_through_a_running_gateway(tmp_path: Path) -> None:
    """With a gateway up, tokens/revoke go through its admin API (auto), which also drops
    its cached credentials: the token is refused at once. A credential can be pasted."""
    token_file = write_secret(tmp_path / "admin.token")
    async with in_process(tmp_path, admin={"token_file": str(token_file)}) as gw:
        path = tmp_path / "routes.yaml"  # the gateway's own file: its listen.admin, its secret
        bought = await gw.buy("/paid")
        async with gw.session.get(gw.url("/paid"), headers=bought.auth) as r:
            assert r.status == 200
        listed = await cli("tokens", "list", "--config", str(path), "--json")
        assert listed.code == 0, listed.err
        tokens = json.loads(listed.out)["tokens"]
        assert [t["payment_hash"] for t in tokens] == [bought.challenge["payment_hash"]]
        token_id = tokens[0]["token_id"]

        credential = f"L402 {bought.macaroon}:{bought.preimage}"
        shown = await cli(
            "tokens", "show", "-", "--config", str(path), "--via", "api", stdin=credential
        )
        assert shown.code == 0, shown.err
        assert f"token_id      {token_id}" in shown.out
        assert bought.preimage not in shown.out + shown.err
        assert bought.macaroon not in shown.out + shown.err

        revoked = await cli("revoke", "-", "--config", str(path), stdin=bought.macaroon)
        assert revoked.code == 0, revoked.err
        assert "revoked via the gateway's admin API" in revoked.out
        assert "refuses it from now on" in revoked.out
        async with gw.session.get(gw.url("/paid"), headers=bought.auth) as r:
            assert r.status == 402
        again = await cli("revoke", token_id, "--config", str(path))
        assert again.code == 1
        assert one_line(again.err) == f"l402-gateway: token {token_id}: already revoked"

        # a wrong secret is one clear line, not a fallback to the store
        write_secret(tmp_path / "admin.token", "c" * 40)
        stale = tmp_path / "stale.yaml"
        stale.write_text(path.read_text())
        gw_secret_file = tmp_path / "other.token"
        write_secret(gw_secret_file, "d" * 40)
        stale.write_text(path.read_text().replace(str(token_file), str(gw_secret_file)))
        refused = await cli("tokens", "list", "--config", str(stale))
        assert refused.code == 1
        assert "refused the secret in admin.token_file" in one_line(refused.err)

    # gateway gone: --via api says so; auto falls back to the store (here: in memory,
    # so the file store is empty, which is what the store answers)
    gone = await cli("tokens", "list", "--config", str(path), "--via", "api")
    assert gone.code == 1
    assert "no gateway answers at http://127.0.0.1:" in one_line(gone.err)


async def test_bad_token_references_are_refused_without_echoing_them(tmp_path: Path) -> None:
    path = config(tmp_path)
    for ref in ("nothex", "L402 notamacaroon:" + "ab" * 32, "ab" * 31):
        ran = await cli("revoke", ref, "--config", str(path))
        assert ran.code == 2
        line = one_line(ran.err)
        assert "expected a token id or payment hash" in line
        assert ref not in line
    missing = await cli("tokens", "show", "ef" * 32, "--config", str(path))
    assert missing.code == 1
    assert "no token with id or payment hash" in one_line(missing.err)
