"""Config keys the store side adds: `store.timeout_seconds`, `challenge_rate_limit.ipv6_prefix`."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ChallengeRateLimit, ConfigErrors, load_config
from tests.unit.test_config_rate_limit import write


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path))
    assert config.challenge_rate_limit == ChallengeRateLimit(60, 20, 64)
    assert config.store.timeout_seconds == 2.0


def test_explicit_values(tmp_path: Path) -> None:
    extra = "store:\n  timeout_seconds: 0.5\nchallenge_rate_limit:\n  ipv6_prefix: 48\n"
    config = load_config(write(tmp_path, extra))
    assert config.store.timeout_seconds == 0.5
    assert config.challenge_rate_limit.ipv6_prefix == 48


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "challenge_rate_limit:\n  ipv6_prefix: 129\n",
            "challenge_rate_limit.ipv6_prefix: must be <= 128",
        ),
        (
            "challenge_rate_limit:\n  ipv6_prefix: 0\n",
            "challenge_rate_limit.ipv6_prefix: must be >= 1",
        ),
        ("store:\n  timeout_seconds: 0\n", "store.timeout_seconds: must be > 0"),
    ],
)
def test_bad_values_are_located_errors(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigErrors) as info:
        load_config(write(tmp_path, extra))
    assert message in str(info.value)
    assert ":10: " in str(info.value)  # the offending line of routes.yaml
