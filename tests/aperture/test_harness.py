"""The Aperture harness: a missing source skips locally and fails in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.aperture import ApertureUnavailable, find_aperture, require_aperture


@pytest.fixture
def no_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty binary cache and a source path that does not exist."""
    monkeypatch.delenv("L402_APERTURE_BIN", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("L402_REQUIRE_APERTURE", raising=False)
    monkeypatch.setenv("L402_BIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("APERTURE_SRC", str(tmp_path / "absent.tar.gz"))


@pytest.mark.usefixtures("no_source")
def test_missing_source_is_reported_as_unavailable() -> None:
    with pytest.raises(ApertureUnavailable, match="source not found"):
        find_aperture()


@pytest.mark.usefixtures("no_source")
def test_missing_source_skips_locally() -> None:
    with pytest.raises(pytest.skip.Exception, match="real Aperture unavailable"):
        require_aperture()


@pytest.mark.usefixtures("no_source")
@pytest.mark.parametrize(("name", "value"), [("CI", "true"), ("L402_REQUIRE_APERTURE", "1")])
def test_missing_source_fails_when_required(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(pytest.fail.Exception, match="required"):
        require_aperture()


def test_a_given_binary_must_be_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("L402_APERTURE_BIN", str(tmp_path / "nope"))
    with pytest.raises(RuntimeError, match="not an executable"):
        find_aperture()
