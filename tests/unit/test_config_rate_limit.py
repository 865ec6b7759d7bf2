"""`challenge_rate_limit`: defaults, explicit values, 0 (off) and located errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.config import ChallengeRateLimit, ConfigErrors, load_config

BASE = """\
lnd:
  tls_cert: tls.cert
  macaroon: invoice.macaroon
routes:
  - name: signal
    path: '^/signal$'
    upstream: "https://upstream.example/base"
    price_sats: 10
"""
FIRST_EXTRA_LINE = 9


def write(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "tls.cert").write_text("cert")
    (tmp_path / "invoice.macaroon").write_bytes(b"mac")
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent(BASE) + extra)
    return path


def test_defaults_are_60_per_minute_burst_20(tmp_path: Path) -> None:
    for extra in ("", "challenge_rate_limit:\n", "challenge_rate_limit: {}\n"):
        limit = load_config(write(tmp_path, extra)).challenge_rate_limit
        assert limit == ChallengeRateLimit(per_minute=60, burst=20)
        assert limit.enabled


def test_explicit_values_and_one_key_alone(tmp_path: Path) -> None:
    path = write(tmp_path, "challenge_rate_limit:\n  per_minute: 5\n  burst: 2\n")
    assert load_config(path).challenge_rate_limit == ChallengeRateLimit(5, 2)
    path = write(tmp_path, "challenge_rate_limit: {burst: 100}\n")
    assert load_config(path).challenge_rate_limit == ChallengeRateLimit(60, 100)


def test_per_minute_zero_disables(tmp_path: Path) -> None:
    limit = load_config(write(tmp_path, "challenge_rate_limit: {per_minute: 0}\n"))
    assert not limit.challenge_rate_limit.enabled


def test_the_shipped_config_sets_it() -> None:
    repo = Path(__file__).resolve().parents[2]
    config = load_config(repo / "config" / "routes.yaml", check_files=False)
    assert config.challenge_rate_limit == ChallengeRateLimit(60, 20)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("per_minute", "-1", "must be >= 0"),
        ("per_minute", "1.5", "expected an integer"),
        ("per_minute", "'60'", "expected an integer"),
        ("per_minute", "true", "expected an integer"),
        ("per_minute", "null", "must not be null"),
        ("burst", "0", "must be >= 1"),
        ("burst", "x", "expected an integer"),
    ],
)
def test_bad_values_are_located(tmp_path: Path, key: str, value: str, message: str) -> None:
    path = write(tmp_path, f"challenge_rate_limit:\n  {key}: {value}\n")
    with pytest.raises(ConfigErrors) as info:
        load_config(path)
    (error,) = info.value.errors
    assert (error.line, error.field) == (FIRST_EXTRA_LINE + 1, f"challenge_rate_limit.{key}")
    assert message in error.message
    assert str(error).startswith(f"{path}:{FIRST_EXTRA_LINE + 1}: challenge_rate_limit.{key}:")


def test_unknown_key_and_wrong_shape_are_located(tmp_path: Path) -> None:
    path = write(tmp_path, "challenge_rate_limit:\n  per_second: 1\n")
    with pytest.raises(ConfigErrors) as info:
        load_config(path)
    (error,) = info.value.errors
    assert (error.line, error.field, error.message) == (
        FIRST_EXTRA_LINE + 1,
        "challenge_rate_limit.per_second",
        "unknown key",
    )
    path = write(tmp_path, "challenge_rate_limit: 60\n")
    with pytest.raises(ConfigErrors) as info:
        load_config(path)
    (error,) = info.value.errors
    assert (error.line, error.field) == (FIRST_EXTRA_LINE, "challenge_rate_limit")
    assert "expected a mapping" in error.message
