"""`store.prune_after_days`: default, explicit values, 0 (off) and located errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.config import ConfigErrors, load_config

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


def write(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "tls.cert").write_text("cert")
    (tmp_path / "invoice.macaroon").write_bytes(b"mac")
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent(BASE) + extra)
    return path


def test_default_is_seven_days_with_or_without_a_store_section(tmp_path: Path) -> None:
    assert load_config(write(tmp_path)).store.prune_after_days == 7
    path = write(tmp_path, "store: {url: 'sqlite:tokens.db'}\n")
    assert load_config(path).store.prune_after_days == 7


@pytest.mark.parametrize("days", [0, 1, 30])
def test_explicit_values_and_zero_disables(tmp_path: Path, days: int) -> None:
    path = write(tmp_path, f"store:\n  url: 'sqlite:tokens.db'\n  prune_after_days: {days}\n")
    config = load_config(path)
    assert config.store.prune_after_days == days
    assert config.store.url == f"sqlite://{tmp_path}/tokens.db"


@pytest.mark.parametrize(
    ("value", "message"),
    [("-1", "must be >= 0"), ("'7'", "expected an integer"), ("1.5", "expected an integer")],
)
def test_bad_values_are_located(tmp_path: Path, value: str, message: str) -> None:
    path = write(tmp_path, f"store:\n  url: 'sqlite:tokens.db'\n  prune_after_days: {value}\n")
    with pytest.raises(ConfigErrors) as info:
        load_config(path)
    (error,) = info.value.errors
    assert (error.line, error.field) == (11, "store.prune_after_days")
    assert message in error.message
