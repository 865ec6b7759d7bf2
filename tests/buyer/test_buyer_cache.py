"""Credential cache state machine and 0600 atomic persistence."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.buyer import cache as cache_module
from gateway.buyer.cache import CacheStatus, Credential, CredentialCache
from gateway.buyer.errors import CacheError
from gateway.l402 import credentials

from .fakes import mint_macaroon

NOW = 1_771_000_000.0
FILES = ["credentials.json", "credentials.json.lock"]  # the data file and its writer lock


def cred(expires_at: float | None = NOW + 60, mac: str = "AgEEbHNhdA==") -> Credential:
    return Credential(mac, "ab" * 32, NOW, expires_at)


def test_state_machine() -> None:
    cache = CredentialCache()
    assert cache.lookup("h", "/a", NOW) == (CacheStatus.MISS, None)
    cache.store("h", "/a", cred())
    assert cache.lookup("h", "/a", NOW) == (CacheStatus.HIT, cred())
    assert cache.lookup("h", "/b", NOW)[0] is CacheStatus.MISS
    assert cache.lookup("other", "/a", NOW)[0] is CacheStatus.MISS
    assert cache.lookup("h", "/a", NOW + 60) == (CacheStatus.STALE, cred())
    assert cache.invalidate("h", "/a")
    assert cache.lookup("h", "/a", NOW) == (CacheStatus.INVALID, None)
    cache.store("h", "/a", cred(mac="AgEEbHNhdB=="))
    status, found = cache.lookup("h", "/a", NOW)
    assert status is CacheStatus.HIT
    assert found is not None
    assert found.macaroon == "AgEEbHNhdB=="
    assert not cache.invalidate("h", "/missing")


def test_force_refresh_bypasses_a_hit() -> None:
    cache = CredentialCache()
    cache.store("h", "/a", cred())
    assert cache.lookup("h", "/a", NOW, force_refresh=True) == (CacheStatus.MISS, None)
    assert cache.lookup("h", "/a", NOW)[0] is CacheStatus.HIT


def test_never_expiring_credential() -> None:
    cache = CredentialCache(default_ttl_seconds=None)
    assert cache.expiry_for(NOW) is None
    cache.store("h", "/a", cred(expires_at=None))
    assert cache.lookup("h", "/a", NOW + 10**9)[0] is CacheStatus.HIT


def test_expiry_is_earlier_of_ttl_and_token_caveat() -> None:
    cache = CredentialCache(default_ttl_seconds=600)
    assert cache.expiry_for(NOW) == NOW + 600
    assert cache.expiry_for(NOW, valid_until=int(NOW) + 30) == NOW + 30
    assert cache.expiry_for(NOW, valid_until=int(NOW) + 6000) == NOW + 600


def test_authorization_header_form() -> None:
    assert cred().authorization() == "L402 AgEEbHNhdA==:" + "ab" * 32
    assert "ab" * 32 not in repr(cred())
    assert "AgEE" not in repr(cred())


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("permissive_umask")
def test_persistence_is_0600_atomic_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "state" / "credentials.json"
    cache = CredentialCache(path)
    cache.store("h:8080", "/a", cred())
    cache.store("h:8080", "/b", cred())
    cache.invalidate("h:8080", "/b")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == FILES
    assert stat.S_IMODE((path.parent / "credentials.json.lock").stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert len(data["entries"]) == 2

    reloaded = CredentialCache(path)
    assert reloaded.lookup("h:8080", "/a", NOW) == (CacheStatus.HIT, cred())
    assert reloaded.lookup("h:8080", "/b", NOW)[0] is CacheStatus.INVALID
    reloaded.clear()
    assert CredentialCache(path).lookup("h:8080", "/a", NOW)[0] is CacheStatus.MISS


def test_refuses_a_world_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    CredentialCache(path).store("h", "/a", cred())
    path.chmod(0o644)
    with pytest.raises(CacheError) as info:
        CredentialCache(path)
    assert info.value.code == "insecure_permissions"


@pytest.mark.parametrize(
    "content", ["not json", '{"version": 9, "entries": []}', '{"entries": [{}]}']
)
def test_refuses_a_corrupt_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(CacheError) as info:
        CredentialCache(path)
    assert info.value.code == "corrupt_cache"


def test_authorization_is_the_core_format() -> None:
    macaroon = mint_macaroon(b"k" * 32, b"h" * 32, ("services=ep212:0",))
    credential = Credential(macaroon, "cd" * 32, NOW, None)
    header = credential.authorization()
    assert header == credentials.format_authorization(macaroon, "cd" * 32)
    parsed = credentials.parse([("Authorization", header)])
    assert parsed is not None
    assert (parsed.macaroon_b64, parsed.preimage.hex()) == (macaroon, "cd" * 32)


def test_unusable_path_fails_at_construction(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("")
    with pytest.raises(CacheError) as info:
        CredentialCache(blocker / "credentials.json")  # its directory is a file
    assert info.value.code == "cache_unusable"
    (tmp_path / "adir").mkdir()
    with pytest.raises(CacheError) as info:
        CredentialCache(tmp_path / "adir")  # the path itself is a directory
    assert info.value.code == "cache_unusable"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]  # no probe left


def test_failed_write_keeps_the_credential_and_raises_cache_error(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    cache = CredentialCache(path)
    path.mkdir()  # the file can no longer be replaced
    with pytest.raises(CacheError) as info:
        cache.store("h", "/a", cred())
    assert info.value.code == "cache_persist_failed"
    assert cache.lookup("h", "/a", NOW) == (CacheStatus.HIT, cred())
    assert sorted(p.name for p in tmp_path.iterdir()) == FILES  # no temp file left


async def test_async_store_reports_a_failed_write_and_keeps_the_credential(
    tmp_path: Path,
) -> None:
    path = tmp_path / "credentials.json"
    cache = CredentialCache(path)
    path.mkdir()
    error = await cache.store_async("h", "/a", cred())
    assert error is not None
    assert error.code == "cache_persist_failed"
    assert cache.lookup("h", "/a", NOW) == (CacheStatus.HIT, cred())
    invalid = await cache.invalidate_async("h", "/a")
    assert invalid is not None
    assert cache.lookup("h", "/a", NOW)[0] is CacheStatus.INVALID


@pytest.mark.usefixtures("permissive_umask")
async def test_async_store_writes_off_the_loop_0600_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: list[int] = []
    real_write = cache_module.write_private_atomic

    def recording_write(path: Path, data: bytes) -> None:
        writers.append(threading.get_ident())
        real_write(path, data)

    monkeypatch.setattr(cache_module, "write_private_atomic", recording_write)
    path = tmp_path / "state" / "credentials.json"
    cache = CredentialCache(path)
    results = await asyncio.gather(
        *(cache.store_async("h", f"/{i}", cred()) for i in range(5)),
        cache.invalidate_async("h", "/0"),
    )
    assert results == [None] * 6
    assert writers
    assert threading.get_ident() not in writers  # never on the event loop's thread
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == FILES
    reloaded = CredentialCache(path)
    assert len(reloaded) == 5  # the last write saw every entry
    assert reloaded.lookup("h", "/0", NOW)[0] is CacheStatus.INVALID
