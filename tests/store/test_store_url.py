"""store.url forms and the PostgreSQL adapter's failure mode."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.config.model import StoreConfig
from gateway.store import StoreError, open_store, parse_store_url


@pytest.mark.parametrize(
    ("url", "kind", "target"),
    [
        ("sqlite:///var/lib/l402-gateway/tokens.db", "sqlite", "/var/lib/l402-gateway/tokens.db"),
        ("sqlite:tokens.db", "sqlite", "/etc/l402/tokens.db"),
        ("sqlite:state/tokens.db", "sqlite", "/etc/l402/state/tokens.db"),
        ("tokens.db", "sqlite", "/etc/l402/tokens.db"),
        ("/abs/tokens.db", "sqlite", "/abs/tokens.db"),
        ("sqlite::memory:", "sqlite", ":memory:"),
        ("postgresql://l402@db:5432/l402", "postgres", "postgresql://l402@db:5432/l402"),
        ("postgres://l402@db/l402", "postgres", "postgres://l402@db/l402"),
    ],
)
def test_parse_store_url(url: str, kind: str, target: str) -> None:
    location = parse_store_url(url, Path("/etc/l402"))
    assert (location.kind, location.target) == (kind, target)


def test_normalised_url_round_trips() -> None:
    location = parse_store_url("sqlite:tokens.db", Path("/etc/l402"))
    assert location.url == "sqlite:///etc/l402/tokens.db"
    assert parse_store_url(location.url) == location


@pytest.mark.parametrize(
    "url", ["", "sqlite:", "sqlite://relative.db", "mysql://x/y", "postgresql://h:99999/db"]
)
def test_bad_store_urls(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        parse_store_url(url)


async def test_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused
        with pytest.raises(StoreError, match="cannot connect") as info:
            await open_store(f"postgresql://l402:s3cret-pw@127.0.0.1:{port}/l402")
    assert "s3cret-pw" not in str(info.value)


def test_a_postgres_password_never_reaches_errors_or_reprs() -> None:
    with pytest.raises(ValueError, match="invalid port") as info:
        parse_store_url("postgresql://app:s3cr/et@db/l402")  # unescaped "/" in the password
    assert "s3cr" not in str(info.value)
    location = parse_store_url("postgresql://app:hunter2@db:5432/l402")
    assert "hunter2" not in repr(location)
    assert "hunter2" not in repr(StoreConfig(location.url, 7))
