"""A mistyped store URL is refused with file:line, never taken for a file name.

`store.url: sqlit:tokens.db` used to pass `check-config` and make the gateway
create `sqlit:tokens.db` beside the config; every word followed by `:` at the
start of the URL now has to be a scheme the gateway knows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.store.url import parse_store_url
from tests.ops.support import cli

HINT = (
    "use sqlite:PATH, sqlite:///ABSOLUTE/PATH, postgresql://... or a plain path"
    " (a file name holding ':' is sqlite:./NAME)"
)


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "conf" / "routes.yaml"
    path.parent.mkdir()
    path.write_text(
        "lnd: {host: '127.0.0.1:10009', tls_cert: tls.cert, macaroon: invoice.macaroon}\n"
        "routes:\n"
        "  - {name: p, path: '^/p$', upstream: 'http://127.0.0.1:9/', price_sats: 1}\n"
        "store:\n"
        f"  url: '{url}'\n"
    )
    return path


@pytest.mark.parametrize("command", [["check-config", "--skip-file-checks"], ["serve"]])
async def test_a_typo_in_the_scheme_is_refused_with_its_line(
    tmp_path: Path, command: list[str]
) -> None:
    path = write_config(tmp_path, "sqlit:tokens.db")
    for name in ("tls.cert", "invoice.macaroon"):  # serve checks they exist
        (path.parent / name).write_text("placeholder\n")
    before = sorted(p.name for p in path.parent.iterdir())
    ran = await cli(*command, "--config", str(path))
    assert ran.code == 2
    assert ran.err.splitlines()[0] == (
        f"{path}:5: store.url: unsupported store URL scheme `sqlit:`;"
        f" did you mean `sqlite:`? {HINT}"
    )
    assert sorted(p.name for p in path.parent.iterdir()) == before  # nothing created


@pytest.mark.parametrize(
    ("url", "scheme", "hint"),
    [
        ("sqlit:///var/lib/tokens.db", "sqlit", "did you mean `sqlite:`? "),
        ("postgresq://l402@db/l402", "postgresq", "did you mean `postgresql:`? "),
        ("mysql://l402@db/l402", "mysql", ""),
        ("tokens:db", "tokens", ""),
    ],
)
def test_unknown_schemes(url: str, scheme: str, hint: str) -> None:
    with pytest.raises(ValueError, match="unsupported store URL scheme") as info:
        parse_store_url(url, Path("/etc/l402"))
    assert str(info.value) == f"unsupported store URL scheme `{scheme}:`; {hint}{HINT}"


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("tokens.db", "sqlite:///etc/l402/tokens.db"),
        ("./odd:name.db", "sqlite:///etc/l402/odd:name.db"),
        ("sqlite:./odd:name.db", "sqlite:///etc/l402/odd:name.db"),
        ("sqlite:tokens.db", "sqlite:///etc/l402/tokens.db"),
        ("sqlite:///var/lib/l402/tokens.db", "sqlite:///var/lib/l402/tokens.db"),
        ("/var/lib/l402/tokens.db", "sqlite:///var/lib/l402/tokens.db"),
        (":memory:", "sqlite::memory:"),
    ],
)
def test_what_still_names_a_sqlite_file(url: str, target: str) -> None:
    assert parse_store_url(url, Path("/etc/l402")).url == target
