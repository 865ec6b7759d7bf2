"""`l402-gateway import-aperture` from Aperture-shaped databases into our real store.

Every test runs the command itself, against real SQLite files and a real
PostgreSQL holding Aperture v0.5.0's tables (tests/aperture/schema.py), into
our store on SQLite and on PostgreSQL. Tokens bought from the real Aperture
are imported in test_aperture_regtest.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.aperture.revocations import MIN_EARLIER_FOR_GUARD
from gateway.aperture.rows import parse_timestamp
from gateway.cli import main
from gateway.store import open_store
from gateway.store.types import ImportedKey, TokenInfo
from tests.aperture.schema import T0, ApertureDb, Token

Capture = pytest.CaptureFixture[str]
REPO = Path(__file__).resolve().parents[2]


def run(capsys: Capture, *argv: str) -> tuple[int, list[str], list[str]]:
    """The command's exit code, stdout lines and stderr lines."""
    code = main(["import-aperture", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def importing(db: ApertureDb, routes: Path, *extra: str) -> list[str]:
    return ["--from", db.source, "--config", str(routes), *extra]


def stored(store_url: str, key_id: bytes) -> bytes | None:
    async def read() -> bytes | None:
        store = await open_store(store_url)
        try:
            return await store.get_root_key(key_id)
        finally:
            await store.close()

    return asyncio.run(read())


def token_info(store_url: str, token_id: bytes) -> TokenInfo | None:
    async def read() -> TokenInfo | None:
        store = await open_store(store_url)
        try:
            return await store.find_token(token_id)
        finally:
            await store.close()

    return asyncio.run(read())


def test_imports_every_key_once(
    aperture_db: ApertureDb, routes_file: Path, store_url: str, capsys: Capture
) -> None:
    tokens = [Token(), Token(service="expensive", state="pending"), Token(service="Old Name")]
    aperture_db.mint(tokens)
    before = Path(aperture_db.target).read_bytes() if aperture_db.kind == "sqlite" else b""
    code, out, err = run(capsys, *importing(aperture_db, routes_file))
    assert code == 0, err
    assert out[0].endswith(": 3 root key(s) in secrets, with l402_transactions")
    assert out[1] == (
        "imported 3, already present 0, conflicts 0, bad rows 0 (states: 'pending' 1, 'settled' 2)"
    )
    # A service that is no route here is named (escaped); its key is imported all the same.
    assert err == [
        "warning: 1 token(s) sold for Aperture service 'Old Name', which is not a route name "
        "in --config: they verify only on a route with exactly that name"
    ]
    for t in tokens:
        assert stored(store_url, t.key_id) == t.root_key
        assert t.root_key.hex() not in "\n".join(out + err)
    info = token_info(store_url, tokens[1].token_id)
    assert info is not None
    assert (info.route, info.price_msat, info.imported, info.created_at) == (
        "expensive",
        10_000,
        True,
        T0,
    )
    code, out, err = run(capsys, *importing(aperture_db, routes_file))
    assert code == 0, err
    assert out[1].startswith("imported 0, already present 3, conflicts 0, bad rows 0")
    if aperture_db.kind == "sqlite":
        assert Path(aperture_db.target).read_bytes() == before  # only ever read


def test_an_older_aperture_without_transactions(
    tmp_path: Path, routes_file: Path, store_url: str, capsys: Capture
) -> None:
    db = ApertureDb.sqlite(tmp_path / "old.db", transactions=False)
    token = Token()
    db.mint([token], transactions=False)
    db.execute("UPDATE secrets SET created_at = 'yesterday'")
    code, out, err = run(capsys, *importing(db, routes_file))
    assert code == 0, err
    assert out[0].endswith(": 1 root key(s) in secrets")
    assert "(states: 'unrecorded' 1)" in out[1]
    assert err == [
        "warning: secrets id 1: created_at: text 'yesterday': not a timestamp; "
        "the import time is used"
    ]
    assert stored(store_url, token.key_id) == token.root_key
    assert token_info(store_url, token.token_id) is None  # token id unknown: not listed


@pytest.mark.parametrize("aperture_db", ["sqlite"], indirect=True)
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_each_bad_row_is_one_line_and_skipped(
    aperture_db: ApertureDb, routes_file: Path, store_url: str, capsys: Capture
) -> None:
    """Values Aperture's schema does not allow (SQLite stores them all the same)."""
    good, short_hash, short_key, text_key, bad_price = (Token() for _ in range(5))
    aperture_db.mint([good, short_hash, short_key, text_key, bad_price])
    aperture_db.add_service("admin-added", "^/x$", "ten")
    aperture_db.script(
        [
            "UPDATE secrets SET hash = zeroblob(31) WHERE id = 2",
            "UPDATE secrets SET secret = zeroblob(16) WHERE id = 3",
            "UPDATE secrets SET secret = 'not a key' WHERE id = 4",
            "UPDATE l402_transactions SET price_sats = 'ten' WHERE id = 5",
        ]
    )
    code, out, err = run(capsys, *importing(aperture_db, routes_file))
    assert code == 1
    assert err == [
        "bad row: services id 1: price: text 'ten', expected a whole number of satoshis; "
        "not listed",
        "bad row: secrets id 2: hash: 31 bytes, expected 32; row skipped",
        "bad row: secrets id 3: secret: 16 bytes, expected 32; row skipped",
        "bad row: secrets id 4: secret: text 'not a key', expected a 32-byte blob; row skipped",
        "bad row: l402_transactions id 5: price_sats: text 'ten', expected a whole number of "
        "satoshis; its key is imported without token id, payment hash and service",
    ]
    assert out[1].startswith("imported 2, already present 0, conflicts 0, bad rows 5")
    assert stored(store_url, good.key_id) == good.root_key
    assert stored(store_url, bad_price.key_id) == bad_price.root_key
    assert token_info(store_url, bad_price.token_id) is None  # its details were not trusted
    for skipped in (short_key, text_key):
        assert stored(store_url, skipped.key_id) is None


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_text_in_the_id_column(
    tmp_path: Path, routes_file: Path, store_url: str, capsys: Capture
) -> None:
    """A `secrets` table whose id is not the rowid (a hand-made or restored copy)."""
    db = ApertureDb("sqlite", str(tmp_path / "copy.db"))
    db.script(["CREATE TABLE secrets (id, hash BLOB, secret BLOB, created_at TIMESTAMP)"])
    named, good = Token(), Token()
    db.execute(
        "INSERT INTO secrets VALUES ('abc', ?, ?, '2026-03-25 10:00:00+00:00')",
        (named.key_id, named.root_key),
    )
    db.execute(
        "INSERT INTO secrets VALUES (7, ?, ?, '2026-03-25 10:00:00+00:00')",
        (good.key_id, good.root_key),
    )
    code, out, err = run(capsys, *importing(db, routes_file))
    assert code == 1
    assert err == ["bad row: secrets rowid 1: id: text 'abc', expected an integer; row skipped"]
    assert out[1].startswith("imported 1,")
    assert stored(store_url, good.key_id) == good.root_key


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_on_error_stop_stops_at_the_first_bad_row(
    aperture_db: ApertureDb, routes_file: Path, store_url: str, capsys: Capture
) -> None:
    tokens = [Token() for _ in range(3)]
    aperture_db.mint(tokens)
    aperture_db.execute("DELETE FROM l402_transactions WHERE token_id = ?", (tokens[1].token_id,))
    aperture_db.execute(
        "UPDATE secrets SET secret = ? WHERE hash = ?", (b"\x02" * 16, tokens[1].key_id)
    )
    row = aperture_db.row_id(tokens[1])
    code, out, err = run(capsys, *importing(aperture_db, routes_file, "--on-error", "stop"))
    assert code == 1
    assert err[0] == (
        f"bad row: secrets id {row}: secret: 16 bytes, expected 32; "
        "import stopped (--on-error stop)"
    )
    assert "stopped at the first bad row" in err[1]
    assert out[1].startswith("imported 1, already present 0, conflicts 0, bad rows 1")
    assert stored(store_url, tokens[0].key_id) == tokens[0].root_key
    assert stored(store_url, tokens[2].key_id) is None  # after the bad row: not imported
    # The default goes on past it.
    code, out, err = run(capsys, *importing(aperture_db, routes_file))
    assert code == 1
    assert err == [f"bad row: secrets id {row}: secret: 16 bytes, expected 32; row skipped"]
    assert out[1].startswith("imported 1, already present 1,")
    assert stored(store_url, tokens[2].key_id) == tokens[2].root_key


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_text_from_the_database_is_escaped(
    aperture_db: ApertureDb, routes_file: Path, capsys: Capture
) -> None:
    """A newline cannot forge an output line, an escape sequence never reaches the terminal."""
    forged = "settled\nimported 999, already present 0, conflicts 0, bad rows 0"
    aperture_db.mint([Token(state=forged), Token(service="x\x1b[2J\u202eevil")])
    aperture_db.add_service("svc\r\nnote: forged", "^/a\tb$", 5)
    code, out, err = run(capsys, *importing(aperture_db, routes_file))
    lines = out + err
    assert not any(line.startswith("imported 999") for line in lines)
    assert not any(line.startswith("note: forged") for line in lines)
    for line in lines:
        assert line.isprintable(), line
    text = "\n".join(lines)
    assert repr(forged) in text  # 'settled\nimported 999, ...' written as an escape
    assert r"'x\x1b[2J\u202eevil'" in text
    assert r"'svc\r\nnote: forged'" in text
    assert r"'^/a\tb$'" in text
    assert code == 0, err


# The command in a child that reports its own peak RSS (VmHWM belongs to the memory of
# the exec'ed process; ru_maxrss would carry over the forking parent's peak).
CHILD = """
import sys
from gateway.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    (peak,) = [line.split()[1] for line in status if line.startswith("VmHWM:")]
print(f"peak-kib {peak}", file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("aperture_db", ["sqlite"], indirect=True)
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_900_mb_blob_is_refused_without_reading_it(
    aperture_db: ApertureDb, routes_file: Path, store_url: str
) -> None:
    huge, good = Token(), Token()
    aperture_db.mint([huge, good])
    size = 900 * 1024 * 1024  # zeroblob: cheap to write, 900 MB to read
    aperture_db.execute("UPDATE secrets SET secret = zeroblob(?) WHERE id = 1", (size,))
    argv = [sys.executable, "-c", CHILD, "import-aperture", *importing(aperture_db, routes_file)]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    seconds = time.monotonic() - started
    *lines, peak = done.stderr.splitlines()
    peak_mib = int(peak.removeprefix("peak-kib ")) / 1024
    assert peak_mib < 200, f"the import process peaked at {peak_mib:.0f} MiB"
    assert seconds < 20
    assert done.returncode == 1, done.stderr
    assert lines == [
        f"bad row: secrets id 1: secret: {size} bytes, over the 65536-byte read bound: "
        "not read; row skipped"
    ]
    assert stored(store_url, good.key_id) == good.root_key


@pytest.mark.postgres
@pytest.mark.parametrize("aperture_db", ["postgres"], indirect=True)
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_large_value_in_postgres_is_not_read(
    aperture_db: ApertureDb, routes_file: Path, capsys: Capture
) -> None:
    """PostgreSQL: Aperture's unique indexes cap its keys' size; `services.path_regexp`
    has no index, so it can hold a large value (8 MB here)."""
    aperture_db.mint([Token()])
    size = 8 * 1024 * 1024
    aperture_db.add_service("big", "", 5)
    aperture_db.execute("UPDATE services SET path_regexp = repeat('a', ?)", (size,))
    code, out, err = run(capsys, *importing(aperture_db, routes_file))
    assert code == 1
    assert err == [
        f"bad row: services id 1: path_regexp: {size} bytes, over the 65536-byte read bound: "
        "not read; not listed"
    ]
    assert out[1].startswith("imported 1, already present 0, conflicts 0, bad rows 1")


def test_a_revocation_in_aperture_is_reported_and_synced(
    aperture_db: ApertureDb, routes_file: Path, store_url: str, capsys: Capture
) -> None:
    tokens = [Token() for _ in range(3)]
    aperture_db.mint(tokens)
    assert run(capsys, *importing(aperture_db, routes_file))[0] == 0
    aperture_db.revoke(tokens[1])  # after the import, as Aperture's admin API does
    aperture_db.mint([late := Token()])  # sold meanwhile

    code, out, err = run(capsys, *importing(aperture_db, routes_file))
    assert code == 1  # a decision is needed
    assert err == [
        f"revoked in Aperture: token {tokens[1].token_id.hex()} (key id "
        f"{tokens[1].key_id.hex()}): still valid here",
        "1 token(s) revoked in Aperture since they were imported still verify here: re-run "
        "with --sync-revocations to revoke them here too",
    ]
    assert out[1].startswith("imported 1, already present 2,")
    assert out[2] == "revoked in Aperture since imported: 1, revoked here now: 0"
    assert stored(store_url, tokens[1].key_id) == tokens[1].root_key
    assert stored(store_url, late.key_id) == late.root_key

    code, out, err = run(capsys, *importing(aperture_db, routes_file, "--sync-revocations"))
    assert code == 0, err
    assert err == [
        f"revoked in Aperture: token {tokens[1].token_id.hex()} (key id "
        f"{tokens[1].key_id.hex()}): revoking it here"
    ]
    assert out[2] == "revoked in Aperture since imported: 1, revoked here now: 1"
    assert stored(store_url, tokens[1].key_id) is None
    info = token_info(store_url, tokens[1].token_id)
    assert info is not None
    assert info.revoked_at is not None
    for kept in (tokens[0], tokens[2], late):
        assert stored(store_url, kept.key_id) == kept.root_key

    code, out, err = run(capsys, *importing(aperture_db, routes_file, "--sync-revocations"))
    assert (code, err, len(out)) == (0, [], 2)  # nothing left to report


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_only_token_revoked_in_aperture(
    aperture_db: ApertureDb, routes_file: Path, store_url: str, capsys: Capture
) -> None:
    """Every key imported before may be gone when there were few (below the guard)."""
    aperture_db.mint([only := Token()])
    assert run(capsys, *importing(aperture_db, routes_file))[0] == 0
    aperture_db.revoke(only)
    code, out, err = run(capsys, *importing(aperture_db, routes_file, "--sync-revocations"))
    assert code == 0, err
    assert out[2] == "revoked in Aperture since imported: 1, revoked here now: 1"
    assert stored(store_url, only.key_id) is None


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_another_database_is_not_taken_for_revocations(
    tmp_path: Path, routes_file: Path, store_url: str, capsys: Capture
) -> None:
    first, second = ApertureDb.sqlite(tmp_path / "a.db"), ApertureDb.sqlite(tmp_path / "b.db")
    first.mint(ours := [Token() for _ in range(MIN_EARLIER_FOR_GUARD)])
    second.mint(theirs := [Token(), Token()])
    assert run(capsys, *importing(first, routes_file))[0] == 0
    # The wrong --from: none of the keys imported before is there. Nothing is revoked.
    code, _, err = run(capsys, *importing(second, routes_file, "--sync-revocations"))
    assert code == 1
    assert err == [
        f"warning: none of the {MIN_EARLIER_FOR_GUARD} key(s) imported earlier under source "
        "'aperture' is in this "
        "database: is --from the database imported before? Nothing revoked (give each "
        "Aperture database its own --source-name)"
    ]
    for t in ours + theirs:
        assert stored(store_url, t.key_id) == t.root_key
    # Under their own source names, two Aperture databases never revoke each other's keys.
    third = ApertureDb.sqlite(tmp_path / "c.db")
    third.mint(others := [Token()])
    assert run(capsys, *importing(third, routes_file, "--source-name", "aperture-c"))[0] == 0
    code, _, err = run(
        capsys, *importing(third, routes_file, "--source-name", "aperture-c", "--sync-revocations")
    )
    assert (code, err) == (0, [])
    assert stored(store_url, others[0].key_id) == others[0].root_key
    with pytest.raises(SystemExit) as refused:
        main(["import-aperture", *importing(third, routes_file, "--source-name", "C!")])
    assert refused.value.code == 2


def test_a_conflicting_key_is_kept_and_reported(
    aperture_db: ApertureDb, routes_file: Path, store_url: str, capsys: Capture
) -> None:
    tokens = [Token(), Token()]
    aperture_db.mint(tokens)
    ours = os.urandom(32)

    async def import_ours() -> None:
        store = await open_store(store_url)
        try:
            await store.import_root_key(ImportedKey(tokens[1].key_id, ours, T0, "aperture"))
        finally:
            await store.close()

    asyncio.run(import_ours())
    code, out, err = run(capsys, *importing(aperture_db, routes_file))
    assert code == 1
    row = aperture_db.row_id(tokens[1])
    assert err == [
        f"conflict: secrets id {row}: key id {tokens[1].key_id.hex()}: an earlier import "
        "holds a different root key (kept ours)"
    ]
    assert out[1].startswith("imported 1, already present 0, conflicts 1, bad rows 0")
    assert stored(store_url, tokens[1].key_id) == ours


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_dry_run_reads_and_writes_nothing(
    aperture_db: ApertureDb, routes_file: Path, store_url: str, capsys: Capture
) -> None:
    tokens = [Token(), Token(service="expensive")]
    aperture_db.mint(tokens)
    code, out, err = run(capsys, *importing(aperture_db, routes_file, "--dry-run"))
    assert code == 0, err
    assert out[1] == (
        "dry run: 2 row(s) read, 0 bad row(s), 0 warning(s), nothing imported (states: 'settled' 2)"
    )
    assert stored(store_url, tokens[0].key_id) is None


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_unusable_sources(tmp_path: Path, routes_file: Path, capsys: Capture) -> None:
    not_aperture = ApertureDb("sqlite", str(tmp_path / "other.db"))
    not_aperture.script(["CREATE TABLE t (x)"])
    for source, message in [
        ("sqlite:/nonexistent/aperture.db", "/nonexistent/aperture.db: no such file"),
        ("mysql://h/db", "--from must be sqlite:PATH or a postgresql:// URL"),
        (not_aperture.source, "no `secrets` table: not Aperture's database"),
        ("postgresql://u:pw-secret@127.0.0.1:1/db", "cannot connect: "),
    ]:
        code, out, err = run(capsys, "--from", source, "--config", str(routes_file))
        assert code == 2
        assert len(err) == 1, err
        assert message in err[0]
        assert "pw-secret" not in "\n".join(out + err)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-25 10:00:00.123456789 +0000 UTC", 1774432800),
        ("2026-03-25 10:00:00.123456789+00:00", 1774432800),
        ("2026-03-25T12:00:00+02:00", 1774432800),
        ("2026-03-25 10:00:00", 1774432800),
        ("2026-03-25T10:00:00Z", 1774432800),
        ("2026-02-30 10:00:00", None),
        ("yesterday", None),
        (10**20, None),
    ],
)
def test_timestamps(text: object, expected: int | None) -> None:
    assert parse_timestamp(text) == expected
