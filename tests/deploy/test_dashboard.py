"""Static checks: the Grafana dashboard and the alert rules only use metrics the
gateway exports, every exported family is used, and every alert is documented
and unit-tested."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.observability.metrics import GatewayMetrics, exported_metric_names

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "l402-gateway.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO / "deploy" / "prometheus" / "alerts_test.yml"
RUNBOOK = REPO / "docs" / "runbook.md"

METRIC = re.compile(r"\bl402_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}

# Exported families deliberately used by neither the dashboard nor the alerts,
# with the reason. Empty today: every family is on the dashboard or alerted on.
UNUSED_ALLOWED: dict[str, str] = {}

# Families the dashboard itself must chart (the panels the operator relies on).
DASHBOARD_REQUIRED = {
    "l402_revenue_msats",
    "l402_challenges_issued",
    "l402_challenges_rate_limited",
    "l402_paid_requests",
    "l402_auth_failures",
    "l402_invoice_failures",
    "l402_upstream_requests",
    "l402_upstream_latency_seconds",
    "l402_gateway_added_latency_seconds",
    "l402_lnd_up",
    "l402_lnd_rpc_latency_seconds",
    "l402_lnd_rpc_errors",
    "l402_settle_index",
    # the Payment scheme (MPP): revenue per scheme, sessions open, deposits, refunds
    "l402_scheme_revenue_msats",
    "l402_sessions_open",
    "l402_session_deposits_msats",
    "l402_session_refunded_msats",
    "l402_session_refunds",
}

# Families labelled by route (docs/architecture.md metrics table).
ROUTE_LABELLED = {
    "l402_challenges_issued",
    "l402_challenges_rate_limited",
    "l402_invoice_failures",
    "l402_paid_requests",
    "l402_tokens_consumed",
    "l402_auth_failures",
    "l402_upstream_requests",
    "l402_upstream_latency_seconds",
    "l402_gateway_added_latency_seconds",
    "l402_settled_invoices",
    "l402_revenue_msats",
    "l402_scheme_paid_requests",
    "l402_scheme_revenue_msats",
    "l402_sessions_opened",
    "l402_sessions_closed",
    "l402_session_deposits_msats",
    "l402_session_refunds",
    "l402_session_refunded_msats",
}


def _families() -> dict[str, tuple[str, set[str]]]:
    """family name -> (type, series names)."""
    return {
        family.name: (
            family.type,
            {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))},
        )
        for family in GatewayMetrics().registry.collect()
    }


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_exprs() -> list[str]:
    dash = _dashboard()
    exprs = [
        target["expr"]
        for panel in _panels(dash["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for var in dash["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var.get("type") == "query" and isinstance(query, str):
            exprs.append(query)
    return exprs


def _alert_rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]


def alert_exprs() -> list[str]:
    return [str(rule["expr"]) for rule in _alert_rules()]


def _metric_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in METRIC.findall(expr)}


def test_exprs_were_found() -> None:
    assert len(dashboard_exprs()) >= 20
    assert len(alert_exprs()) >= 6
    # the extraction itself: a metric name among selectors, functions and labels
    assert _metric_names(
        ['sum by (le) (rate(l402_upstream_latency_seconds_bucket{job="l402-gateway"}[5m]))']
    ) == {"l402_upstream_latency_seconds_bucket"}


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_metric_used_is_exported(source: str) -> None:
    exprs = dashboard_exprs() if source == "dashboard" else alert_exprs()
    unknown = _metric_names(exprs) - exported_metric_names()
    assert unknown == set(), f"{source} uses metrics the gateway does not export: {unknown}"


def test_every_exported_family_is_used() -> None:
    used = _metric_names(dashboard_exprs() + alert_exprs())
    unused = {name for name, (_type, series) in _families().items() if not series & used}
    assert unused == set(UNUSED_ALLOWED), (
        f"exported but neither charted nor alerted on: {unused - set(UNUSED_ALLOWED)}; "
        f"allowlisted but used: {set(UNUSED_ALLOWED) - unused}"
    )


def test_dashboard_charts_the_required_families() -> None:
    used = _metric_names(dashboard_exprs())
    families = _families()
    missing = {name for name in DASHBOARD_REQUIRED if not families[name][1] & used}
    assert missing == set()


def test_counters_and_buckets_only_inside_rate_or_increase() -> None:
    """Raw counters are meaningless on a graph; gauges must never be rate()d."""
    families = _families()
    cumulative = {
        series
        for ftype, names in families.values()
        if ftype in ("counter", "histogram")
        for series in names
    }
    gauges = {series for ftype, names in families.values() if ftype == "gauge" for series in names}
    problems = []
    for expr in dashboard_exprs() + alert_exprs():
        if expr.startswith("label_values("):
            continue
        for match in METRIC.finditer(expr):
            name = match.group(0)
            wrapped = re.search(r"\b(rate|increase|irate)\(\s*$", expr[: match.start()])
            if name in cumulative and not wrapped:
                problems.append(f"{name} not inside rate()/increase() in {expr!r}")
            if name in gauges and wrapped:
                problems.append(f"gauge {name} inside rate()/increase() in {expr!r}")
    assert problems == []


def test_histogram_quantiles_aggregate_by_le() -> None:
    exprs = [e for e in dashboard_exprs() + alert_exprs() if "histogram_quantile" in e]
    assert exprs
    for expr in exprs:
        assert re.search(r"by \(le\b", expr), expr
        assert "_bucket" in expr, expr


def test_dashboard_shape() -> None:
    dash = _dashboard()
    assert 39 <= dash["schemaVersion"] <= 41
    assert dash["uid"] == "l402-gateway"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    route = variables["route"]
    assert route["query"]["query"] == "label_values(l402_challenges_issued_total, route)"
    assert route["datasource"]["uid"] == "${DS_PROMETHEUS}"
    panels = list(_panels(dash["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            # every selector of a per-route family honours the route variable
            for match in METRIC.finditer(target["expr"]):
                if _family_of(match.group(0)) in ROUTE_LABELLED:
                    selector = target["expr"][match.end() :]
                    assert re.match(r'\{[^}]*route=~"\$route"', selector), (
                        panel["title"],
                        target["expr"],
                    )


def _family_of(series: str) -> str:
    for name, (_type, names) in _families().items():
        if series in names:
            return name
    raise AssertionError(f"unknown series {series}")


def _runbook_anchors() -> set[str]:
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip().lower()
            anchor = re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")
            anchors.add(anchor)
    return anchors


def test_alerts_are_labelled_and_link_to_the_runbook() -> None:
    anchors = _runbook_anchors()
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"], rule["alert"]
        assert annotations["description"], rule["alert"]
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "docs/runbook.md", rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"docs/runbook.md has no section for {rule['alert']}"


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    cases = [
        case
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for rule in _alert_rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c.get("exp_alerts") for c in mine), f"{rule['alert']}: no firing case"
        assert any(not c.get("exp_alerts") for c in mine), f"{rule['alert']}: no quiet case"
