"""import-aperture on databases shaped like Aperture's, into a test-double store.

The real-database cases (a token bought from the real Aperture, SQLite and
PostgreSQL) are in test_aperture_regtest.py.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import yaml

from gateway.aperture.importer import ImportFailed, check_snapshot, import_snapshot
from gateway.aperture.keystore import ApertureDbError, parse_timestamp, read_source
from gateway.cli import main
from tests.aperture.doubles import InMemoryKeyStore, Token, write_aperture_sqlite

ROUTES = {"premium", "expensive"}


@pytest.fixture
def tokens() -> list[Token]:
    return [Token(), Token(service="expensive", state="pending"), Token()]


async def test_imports_every_key_once(tmp_path: Path, tokens: list[Token]) -> None:
    db = tmp_path / "aperture.db"
    write_aperture_sqlite(db, tokens)
    before = db.read_bytes()
    snapshot = await read_source(f"sqlite:{db}")
    assert snapshot.has_transactions
    store = InMemoryKeyStore()
    report = await import_snapshot(snapshot, store, ROUTES)
    assert (report.read, report.imported, report.already_present) == (3, 3, 0)
    assert report.clean
    assert report.by_state == {"settled": 2, "pending": 1}
    assert {k.key_id: k.root_key for k in store.imported} == {t.key_id: t.root_key for t in tokens}
    first = store.imported[0]
    assert first.token_id == tokens[0].token_id
    assert first.payment_hash == tokens[0].payment_hash
    assert first.service == "premium"
    assert first.source == "aperture"
    assert first.created_at == 1774432800  # 2026-03-25 10:00:00 UTC
    assert tokens[0].root_key.hex() not in repr(first)
    # Re-running is harmless.
    again = await import_snapshot(await read_source(f"sqlite:{db}"), store, ROUTES)
    assert (again.imported, again.already_present) == (0, 3)
    assert again.clean
    assert db.read_bytes() == before  # Aperture's database is only read


async def test_conflicting_key_is_kept_and_reported(tmp_path: Path, tokens: list[Token]) -> None:
    db = tmp_path / "aperture.db"
    write_aperture_sqlite(db, tokens)
    ours = secrets.token_bytes(32)
    store = InMemoryKeyStore(keys={tokens[1].key_id: ours})
    report = await import_snapshot(await read_source(str(db)), store, ROUTES)
    assert report.conflicts == [tokens[1].key_id.hex()]
    assert report.imported == 2
    assert not report.clean
    assert store.keys[tokens[1].key_id] == ours


async def test_rows_that_cannot_be_keys_are_skipped_with_a_reason(tmp_path: Path) -> None:
    good = Token()
    db = tmp_path / "aperture.db"
    write_aperture_sqlite(
        db,
        [good],
        raw_secrets=[
            (b"\x01" * 31, secrets.token_bytes(32), "2026-03-25 10:00:00 +0000 UTC"),
            (secrets.token_bytes(32), b"\x02" * 16, "2026-03-25 10:00:00 +0000 UTC"),
        ],
    )
    report = await import_snapshot(await read_source(f"sqlite:{db}"), InMemoryKeyStore(), ROUTES)
    assert report.imported == 1
    assert report.skipped == [
        "row 2: hash is 31 bytes, expected 32",
        "row 3: secret is 16 bytes, expected 32",
    ]


async def test_transaction_row_that_contradicts_the_key_is_not_trusted(tmp_path: Path) -> None:
    token = Token()
    liar = Token(payment_hash=secrets.token_bytes(32))
    db = tmp_path / "aperture.db"
    write_aperture_sqlite(db, [token])
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE l402_transactions SET payment_hash = ?", (liar.payment_hash,))
    store = InMemoryKeyStore()
    report = await import_snapshot(await read_source(f"sqlite:{db}"), store, ROUTES)
    assert report.imported == 1
    (key,) = store.imported
    assert (key.token_id, key.payment_hash, key.service) == (None, None, None)
    assert any("does not match the key id" in w for w in report.warnings)


async def test_older_aperture_without_transactions(tmp_path: Path) -> None:
    token = Token(created_at="garbage")
    db = tmp_path / "aperture.db"
    write_aperture_sqlite(db, [token], transactions=False)
    snapshot = await read_source(f"sqlite:{db}")
    assert not snapshot.has_transactions
    store = InMemoryKeyStore()
    report = await import_snapshot(snapshot, store, ROUTES, clock=lambda: 1_800_000_000.5)
    (key,) = store.imported
    assert key.key_id == token.key_id
    assert key.token_id is None
    assert key.created_at == 1_800_000_000
    assert report.by_state == {"unrecorded": 1}
    assert any("unreadable created_at" in w for w in report.warnings)


async def test_unknown_services_are_counted(tmp_path: Path) -> None:
    db = tmp_path / "aperture.db"
    write_aperture_sqlite(db, [Token(service="Old Name"), Token(service="Old Name"), Token()])
    report = await import_snapshot(await read_source(f"sqlite:{db}"), InMemoryKeyStore(), ROUTES)
    assert report.unknown_services == {"Old Name": 2}


async def test_store_failure_stops_with_what_was_done(tmp_path: Path, tokens: list[Token]) -> None:
    db = tmp_path / "aperture.db"
    write_aperture_sqlite(db, tokens)
    store = InMemoryKeyStore(fail_on=tokens[1].key_id)
    with pytest.raises(ImportFailed) as failed:
        await import_snapshot(await read_source(f"sqlite:{db}"), store, ROUTES)
    assert failed.value.report.imported == 1
    assert [k.key_id for k in store.imported] == [tokens[0].key_id]


async def test_check_without_a_store(tmp_path: Path, tokens: list[Token]) -> None:
    db = tmp_path / "aperture.db"
    write_aperture_sqlite(db, tokens)
    report, keys = check_snapshot(await read_source(f"sqlite:{db}"), ROUTES)
    assert report.read == 3
    assert [k.key_id for k in keys] == [t.key_id for t in tokens]
    assert (report.imported, report.already_present) == (0, 0)


@pytest.mark.parametrize(
    "source",
    ["sqlite:/nonexistent/aperture.db", "mysql://h/db", "sqlite:{not_aperture}"],
)
async def test_unusable_sources(tmp_path: Path, source: str) -> None:
    not_aperture = tmp_path / "other.db"
    import sqlite3

    with sqlite3.connect(not_aperture) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(ApertureDbError):
        await read_source(source.format(not_aperture=not_aperture))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-25 10:00:00.123456789 +0000 UTC", 1774432800),
        ("2026-03-25T12:00:00+02:00", 1774432800),
        ("2026-03-25 10:00:00", 1774432800),
        ("2026-03-25T10:00:00Z", 1774432800),
        ("2026-02-30 10:00:00", None),
        ("yesterday", None),
    ],
)
def test_timestamps(text: str, expected: int | None) -> None:
    assert parse_timestamp(text) == expected


def routes_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "routes.yaml"
    document = {
        "lnd": {"tls_cert": "tls.cert", "macaroon": "invoice.macaroon"},
        "store": {"url": f"sqlite:///{tmp_path / 'tokens.db'}"},
        "routes": [
            {"name": "premium", "path": "^/p$", "upstream": "http://127.0.0.1:1", "price_sats": 10}
        ],
    }
    path.write_text(yaml.safe_dump(document))
    return path


def test_cli_imports_into_the_real_sqlite_store(
    tmp_path: Path, tokens: list[Token], capsys: pytest.CaptureFixture[str]
) -> None:
    """The command with our real SQLite store: every key imported (exit 0), counts printed;
    a service that is no route here and one defined through Aperture's admin API are named."""
    db = tmp_path / "aperture.db"
    write_aperture_sqlite(db, tokens, services=[("admin-added", "^/x$", 5)])
    code = main(
        ["import-aperture", "--from", f"sqlite:{db}", "--config", str(routes_yaml(tmp_path))]
    )
    out, err = capsys.readouterr()
    assert "read 3 root key(s)" in out
    assert "service 'admin-added' (admin API" in err
    for t in tokens:
        assert t.root_key.hex() not in out + err
    assert code == 0, err  # every key is in the store ('expensive' is reported, still imported)
    assert "imported 3, already present 0, conflicts 0, skipped 0" in out
    again = main(
        ["import-aperture", "--from", f"sqlite:{db}", "--config", str(tmp_path / "routes.yaml")]
    )
    out, err = capsys.readouterr()
    assert again == 0, err  # re-running is harmless
    assert "imported 0, already present 3, conflicts 0, skipped 0" in out


def test_cli_dry_run_and_bad_source(
    tmp_path: Path, tokens: list[Token], capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "aperture.db"
    write_aperture_sqlite(db, tokens)
    config = routes_yaml(tmp_path)
    code = main(["import-aperture", "--from", f"sqlite:{db}", "--config", str(config), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "dry run: 3 read, nothing imported" in out
    assert "warning: 1 token(s) sold for Aperture service 'expensive'" in err
    code = main(
        [
            "import-aperture",
            "--from",
            "postgresql://u:pw-secret@127.0.0.1:1/db",
            "--config",
            str(config),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 2
    assert "cannot connect" in err
    assert "pw-secret" not in out + err
