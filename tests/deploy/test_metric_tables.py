"""The metric table in README.md (its one home; docs/architecture.md points to it) matches
the registry exactly,
as the dashboard and alerts are checked against it (test_dashboard.py): every family
the gateway exports is documented with its type and labels, and nothing else is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram

from gateway.observability.metrics import GatewayMetrics

REPO = Path(__file__).resolve().parents[2]
TABLES = {"README.md": "## Metrics"}
_ROW = re.compile(r"^\|\s*`(l402_[a-z0-9_]+)`\s*\|([^|]*)\|([^|]*)\|")


def exported() -> dict[str, tuple[str, frozenset[str]]]:
    """Documented name -> (type, label names): counters carry `_total`, as scraped."""
    found: dict[str, tuple[str, frozenset[str]]] = {}
    for metric in vars(GatewayMetrics()).values():
        if isinstance(metric, Counter | Gauge | Histogram):
            kind = metric._type  # prometheus_client's own type word
            name = metric._name + ("_total" if kind == "counter" else "")
            found[name] = (kind, frozenset(metric._labelnames))
    return found


def documented(text: str, heading: str) -> dict[str, tuple[str, frozenset[str]]]:
    """Rows of the first table under the heading that starts with `heading`."""
    start = re.search(rf"^{re.escape(heading)}\b.*$", text, re.M)
    assert start is not None, f"no heading {heading!r}"
    section = text[start.end() :]
    end = re.search(r"^#{1,3} ", section, re.M)
    rows: dict[str, tuple[str, frozenset[str]]] = {}
    for line in section[: end.start() if end else None].splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        name, kind, labels = match.groups()
        assert name not in rows, f"{name} listed twice"
        label_text = re.sub(r"\([^)]*\)", "", labels)
        names = frozenset(n.strip() for n in label_text.split(",") if n.strip())
        rows[name] = (kind.split()[0].strip(), names)
    return rows


def test_the_registry_is_read() -> None:
    families = exported()
    assert families["l402_revenue_msats_total"] == ("counter", frozenset({"route"}))
    assert families["l402_lnd_up"] == ("gauge", frozenset())
    assert len(families) >= 18


@pytest.mark.parametrize("file", sorted(TABLES))
def test_metric_table_matches_the_registry(file: str) -> None:
    docs = documented((REPO / file).read_text(), TABLES[file])
    families = exported()
    assert set(docs) - set(families) == set(), f"{file} documents metrics nobody exports"
    assert set(families) - set(docs) == set(), f"{file} lacks exported metrics"
    wrong = {name: (docs[name], families[name]) for name in docs if docs[name] != families[name]}
    assert wrong == {}, f"{file}: (documented, exported) type and labels differ"


def test_a_missing_or_wrong_row_is_caught() -> None:
    """The parser really reads the rows: a dropped row and a wrong label show up."""
    readme = (REPO / "README.md").read_text()
    docs = documented(readme, TABLES["README.md"])
    assert docs["l402_auth_failures_total"] == ("counter", frozenset({"route", "reason"}))
    row = next(line for line in readme.splitlines() if line.startswith("| `l402_lnd_up` |"))
    assert "l402_lnd_up" not in documented(readme.replace(row + "\n", ""), TABLES["README.md"])
    relabelled = readme.replace(
        "| `l402_settle_index` | gauge | |", "| `l402_settle_index` | gauge | route |"
    )
    assert (
        documented(relabelled, TABLES["README.md"])["l402_settle_index"]
        != exported()["l402_settle_index"]
    )
