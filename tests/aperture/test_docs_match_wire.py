"""The migration docs say what the real Aperture v0.5.0 does (tests/aperture/observed.py,
checked on the wire by test_wire_regtest.py) and what our commands do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.aperture.observed import PLAIN_HTTP2, SPELLINGS

DOCS = Path(__file__).resolve().parents[2] / "docs"
README = DOCS.parent / "README.md"


def section(text: str, heading: str) -> str:
    """The text under a markdown heading, up to the next heading of the same level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n") + len(heading) + 1
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, start)
    return text[start : end.start() if end else len(text)]


def rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]


def wire_row(marker: str) -> list[str]:
    compatibility = (DOCS / "compatibility.md").read_text()
    table = rows(section(compatibility, "### On the wire"))
    found = [row for row in table if row[0].startswith(marker)]
    assert len(found) == 1, f"one row of 'On the wire' must start with {marker!r}"
    return found[0]


@pytest.mark.parametrize("name", sorted(SPELLINGS))
def test_each_credential_spelling_is_documented_as_seen(name: str) -> None:
    seen = SPELLINGS[name]
    feature, here, notes = wire_row(seen.doc_row)
    if seen.aperture_status == 200:
        assert here == "same", feature
    else:
        assert here in ("extra", "different"), feature
        assert "Aperture v0.5.0" in notes
        assert "402" in notes
        assert "as Aperture does" not in notes


def test_plain_http2_is_a_documented_difference() -> None:
    _, here, notes = wire_row(PLAIN_HTTP2.doc_row)
    assert here == "different"
    assert "505" in notes
    assert "http2_not_grpc" in notes
    assert "Aperture serves" in notes


def test_the_migration_guide_matches_the_commands() -> None:
    guide = (DOCS / "migrating-from-aperture.md").read_text()
    # convert-aperture converts gRPC services (no TODO, no dropped line).
    assert "TODO(grpc)" not in guide
    assert "HTTP/1.1 only" not in guide
    # 402 is the default answer to a refused credential; 401 is the option.
    assert "gets 401 instead of 402" not in guide
    assert "invalid_credential_status: 401" in guide
    # Revocations after an import: not carried over by themselves; the flag does it.
    assert "not carried over" in guide
    assert "--sync-revocations" in guide
    assert "--on-error" in guide
    compatibility = (DOCS / "compatibility.md").read_text()
    (revocation,) = [r for r in rows(compatibility) if r[0].startswith("a token revoked in")]
    assert revocation[1] == "not carried over by itself"


def test_the_readme_does_not_credit_aperture_with_our_extensions() -> None:
    readme = section(README.read_text(), "## Compatibility with Aperture and the L402 spec")
    assert "with Aperture's precedence" not in readme
    assert "Aperture v0.5.0 refuses them" in readme
    assert "--sync-revocations" in readme
