"""The cache file shared by several buyers: lock, merge, bound, refusal of unsafe files."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from gateway.buyer.cache import CacheStatus, Credential, CredentialCache
from gateway.buyer.cachefile import ensure_private_dir, lock_path
from gateway.buyer.errors import CacheError, SettingsError
from gateway.buyer.settings import default_cache_path

NOW = 1_771_000_000.0
HOME_CACHE = ".cache/l402-buyer/credentials.json"

# Each writer process stores its own keys as fast as it can once told to start.
_WRITER = """
import sys
from pathlib import Path
from gateway.buyer.cache import Credential, CredentialCache
path, who, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cache = CredentialCache(path)
sys.stdin.readline()  # start together
for i in range(count):
    cache.store(who, f"/{i}", Credential(f"mac-{who}-{i}", "ab" * 32, 1.0, None))
"""


def cred(mac: str, obtained_at: float = NOW) -> Credential:
    return Credential(mac, "cd" * 32, obtained_at, None)


async def _writer(path: Path, who: str, count: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WRITER, str(path), who, str(count), stdin=asyncio.subprocess.PIPE
    )


def _temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".tmp")]


async def test_concurrent_processes_lose_no_entry(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    writers, count = 4, 20
    procs = [await _writer(path, f"buyer{n}", count) for n in range(writers)]
    async with asyncio.timeout(120):
        for proc in procs:  # every writer has loaded the (empty) file before any writes
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            proc.stdin.close()
        codes = [await proc.wait() for proc in procs]
    assert codes == [0] * writers
    reloaded = CredentialCache(path)
    assert len(reloaded) == writers * count
    status, found = reloaded.lookup(f"buyer{writers - 1}", f"/{count - 1}", NOW)
    assert status is CacheStatus.HIT
    assert found is not None
    assert found.macaroon == f"mac-buyer{writers - 1}-{count - 1}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert await asyncio.to_thread(_temp_files, tmp_path) == []


def test_two_caches_on_one_file_merge(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    a, b = CredentialCache(path), CredentialCache(path)
    a.store("h", "/a", cred("A"))
    b.store("h", "/b", cred("B"))  # b never saw /a: the write must not drop it
    assert b.lookup("h", "/a", NOW)[0] is CacheStatus.HIT  # and b now sees it
    reloaded = CredentialCache(path)
    assert {reloaded.lookup("h", s, NOW)[0] for s in ("/a", "/b")} == {CacheStatus.HIT}


def test_invalidate_marks_only_the_refused_credential(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    a = CredentialCache(path)
    a.store("h", "/a", cred("old"))
    b = CredentialCache(path)  # b holds "old"
    a.store("h", "/a", cred("new", NOW + 1))  # a paid again meanwhile
    assert b.invalidate("h", "/a")  # the seller refused b's "old"
    status, found = CredentialCache(path).lookup("h", "/a", NOW)
    assert status is CacheStatus.HIT
    assert found is not None
    assert found.macaroon == "new"


def test_later_credential_wins_for_one_key(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    a, b = CredentialCache(path), CredentialCache(path)
    b.store("h", "/a", cred("later", NOW + 5))
    a.store("h", "/a", cred("earlier", NOW))
    found = CredentialCache(path).lookup("h", "/a", NOW)[1]
    assert found is not None
    assert found.macaroon == "later"


async def test_lock_wait_has_a_deadline_and_the_credential_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    cache = CredentialCache(path, lock_timeout_seconds=0.2)
    held = os.open(lock_path(path), os.O_RDWR)  # another buyer, stuck while holding the lock
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        error = await cache.store_async("h", "/a", cred("A"))
        assert error is not None
        assert error.code == "cache_persist_failed"
        assert "another process holds the cache lock" in error.message
        assert cache.lookup("h", "/a", NOW)[0] is CacheStatus.HIT
        with pytest.raises(CacheError):
            cache.store("h", "/b", cred("B"))
    finally:
        os.close(held)
    assert await cache.store_async("h", "/c", cred("C")) is None  # retries what was pending
    reloaded = CredentialCache(path)
    assert len(reloaded) == 3


def test_bound_drops_refused_then_expired_then_oldest() -> None:
    cache = CredentialCache(max_entries=3, clock=lambda: NOW)
    cache.store("h", "/refused", cred("R", NOW + 9))
    cache.invalidate("h", "/refused")
    cache.store("h", "/expired", Credential("E", "cd" * 32, NOW + 8, NOW - 1))
    cache.store("h", "/old", cred("O", NOW))
    cache.store("h", "/new", cred("N", NOW + 1))
    assert len(cache) == 3
    assert cache.lookup("h", "/refused", NOW)[0] is CacheStatus.MISS
    cache.store("h", "/newer", cred("N2", NOW + 2))
    assert cache.lookup("h", "/expired", NOW)[0] is CacheStatus.MISS
    cache.store("h", "/newest", cred("N3", NOW + 3))
    assert cache.lookup("h", "/old", NOW)[0] is CacheStatus.MISS
    assert len(cache) == 3


def test_bound_applies_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    cache = CredentialCache(path, max_entries=2)
    for i in range(4):
        cache.store("h", f"/{i}", cred(str(i), NOW + i))
    assert len(json.loads(path.read_text())["entries"]) == 2


def test_symlinked_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    CredentialCache(real).store("h", "/a", cred("A"))
    link = tmp_path / "credentials.json"
    link.symlink_to(real)
    with pytest.raises(CacheError) as info:
        CredentialCache(link)
    assert info.value.code == "insecure_permissions"


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.ftruncate(fd, 8 * 1024 * 1024 + 1)
    os.close(fd)
    with pytest.raises(CacheError) as info:
        CredentialCache(path)
    assert info.value.code == "corrupt_cache"


def test_file_made_readable_later_is_not_written_to(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    cache = CredentialCache(path)
    cache.store("h", "/a", cred("A"))
    path.chmod(0o644)
    with pytest.raises(CacheError) as info:
        cache.store("h", "/b", cred("B"))
    assert info.value.code == "cache_persist_failed"
    assert "accessible to others" in info.value.message
    assert cache.lookup("h", "/b", NOW)[0] is CacheStatus.HIT


def test_private_dir_created_0700_and_tightened(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        created = tmp_path / "a" / "l402-buyer"
        ensure_private_dir(created)
        assert stat.S_IMODE(created.stat().st_mode) == 0o700
        loose = tmp_path / "loose"
        loose.mkdir(mode=0o775)
        ensure_private_dir(loose)
        assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"XDG_CACHE_HOME": "/x/cache", "HOME": "/home/u"}, "/x/cache/l402-buyer/credentials.json"),
        (
            {"XDG_CACHE_HOME": "rel", "HOME": "/home/u"},
            "/home/u/.cache/l402-buyer/credentials.json",
        ),
        ({"HOME": "/home/u"}, "/home/u/.cache/l402-buyer/credentials.json"),
    ],
)
def test_default_cache_path(env: dict[str, str], expected: str) -> None:
    assert default_cache_path(env) == Path(expected)


@pytest.mark.parametrize("env", [{}, {"HOME": "relative"}, {"XDG_CACHE_HOME": "rel"}])
def test_default_cache_path_needs_an_absolute_home(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as info:
        default_cache_path(env)
    assert info.value.code == "missing_setting"
