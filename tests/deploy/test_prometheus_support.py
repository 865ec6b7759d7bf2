"""Real Prometheus (Debian's binary) scraping the gateway's metric registry.

Checks tests/support/prometheus.py itself, and that the shipped
prometheus.yml, alerts.yml and Grafana dashboard work against a real server
fed by `gateway.observability.metrics.GatewayMetrics`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server

from gateway.observability.metrics import GatewayMetrics
from tests.support.prometheus import (
    PrometheusQueryError,
    PrometheusServer,
    require_binary,
    sample_value,
    values_by,
)

pytestmark = pytest.mark.prometheus

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "l402-gateway.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"


def metrics_app(metrics: GatewayMetrics) -> web.Application:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", handler)
    return app


async def test_scrapes_exact_values_from_aiohttp_app(aiohttp_server: Any) -> None:
    require_binary("prometheus")
    metrics = GatewayMetrics()
    metrics.declare_routes(["x", "y"])
    metrics.paid_requests.labels(route="x").inc(3)
    metrics.challenges_issued.labels(route="x").inc(7)
    metrics.revenue_msats.labels(route="x").inc(10_000)
    metrics.auth_failures.labels(route="y", reason="expired").inc(2)
    metrics.lnd_up.set(1)
    metrics.settle_index.set(42)
    server = await aiohttp_server(metrics_app(metrics), host="127.0.0.1")
    target = f"127.0.0.1:{server.port}"

    async with PrometheusServer(target) as prom:
        assert prom.pid is not None
        up = await prom.wait_for_scrape_async()
        assert up[0]["metric"]["instance"] == target
        assert up[0]["metric"]["job"] == "l402-gateway"

        paid = await prom.query_async('l402_paid_requests_total{route="x"}')
        assert sample_value(paid, route="x") == 3.0
        assert values_by(await prom.query_async("l402_paid_requests_total"), "route") == {
            "x": 3.0,
            "y": 0.0,
        }
        challenged = await prom.query_async("l402_challenges_issued_total")
        assert sample_value(challenged, route="x") == 7.0
        revenue = await prom.query_async("l402_revenue_msats_total")
        assert sample_value(revenue, route="x") == 10_000.0
        failures = await prom.query_async("l402_auth_failures_total")
        assert sample_value(failures, route="y", reason="expired") == 2.0
        assert sample_value(await prom.query_async("l402_settle_index")) == 42.0
        assert sample_value(await prom.query_async("l402_lnd_up")) == 1.0

        # A later increment shows up on a later scrape (and only then).
        metrics.paid_requests.labels(route="x").inc(2)
        paid = await prom.wait_for_async(
            'l402_paid_requests_total{route="x"}',
            lambda r: bool(r) and float(r[0]["value"][1]) != 3.0,
            timeout=15,
        )
        assert sample_value(paid, route="x") == 5.0

        workdir = prom.workdir
        assert workdir is not None
        assert workdir.is_dir()
        proc_pid = prom.pid

    assert prom.pid is None
    assert not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(proc_pid, 0)  # terminated and reaped


# --- one shared server for the dashboard and alert checks --------------------


class Fed:
    def __init__(self, metrics: GatewayMetrics, prom: PrometheusServer) -> None:
        self.metrics = metrics
        self.prom = prom


def _populate(metrics: GatewayMetrics) -> None:
    """Touch every family and label the dashboard and alerts use."""
    metrics.declare_routes(["premium", "expensive"])
    for route, n in (("premium", 5), ("expensive", 2)):
        metrics.challenges_issued.labels(route=route).inc(n * 2)
        metrics.paid_requests.labels(route=route).inc(n)
        metrics.tokens_consumed.labels(route=route).inc(n)
        metrics.settled_invoices.labels(route=route).inc(n)
        metrics.revenue_msats.labels(route=route).inc(n * 10_000)
        metrics.invoice_failures.labels(route=route, reason="lnd_unavailable").inc()
        metrics.auth_failures.labels(route=route, reason="bad_signature").inc()
        for status_class in ("2xx", "5xx", "timeout"):
            metrics.upstream_requests.labels(route=route, status_class=status_class).inc(n)
        metrics.upstream_latency.labels(route=route).observe(0.12)
        metrics.added_latency.labels(route=route).observe(0.0004)
        metrics.pricing_fallbacks.labels(route=route, reason="timeout").inc()
        metrics.pricing_latency.labels(route=route).observe(0.003)
    metrics.lnd_rpc_latency.labels(method="AddInvoice").observe(0.02)
    metrics.lnd_rpc_errors.labels(method="AddInvoice", code="UNAVAILABLE").inc()
    metrics.lnd_up.set(0)
    metrics.settle_index.set(17)
    metrics.config_reloads.labels(result="ok").inc()
    metrics.config_reloads.labels(result="error")
    # the Payment scheme (MPP)
    for scheme in ("l402", "charge", "session"):
        metrics.scheme_paid_requests.labels(route="premium", scheme=scheme).inc()
        metrics.scheme_revenue_msats.labels(route="premium", scheme=scheme).inc(10_000)
    metrics.sessions_opened.labels(route="premium").inc(2)
    metrics.sessions_closed.labels(route="premium", reason="client").inc()
    metrics.sessions_open.set(1)
    metrics.session_deposits_msats.labels(route="premium").inc(200_000)
    metrics.session_refunds.labels(route="premium", result="succeeded").inc()
    metrics.session_refunded_msats.labels(route="premium").inc(170_000)


@pytest.fixture(scope="module")
def fed() -> Iterator[Fed]:
    require_binary("prometheus")
    metrics = GatewayMetrics()
    _populate(metrics)
    httpd, thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    try:
        with PrometheusServer(f"127.0.0.1:{httpd.server_port}") as prom:
            prom.wait_for_scrape()
            yield Fed(metrics, prom)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def _grafana_to_promql(expr: str) -> str:
    """Substitute the Grafana variables the dashboard uses."""
    expr = expr.replace("$__rate_interval", "30s").replace("$__range", "5m")
    expr = expr.replace("$route", ".*")
    assert "$" not in expr, f"unhandled Grafana variable in {expr!r}"
    return expr


def test_every_dashboard_query_returns_data(fed: Fed) -> None:
    prom = fed.prom
    # rate() needs two samples inside the 30s window.
    prom.wait_for("count_over_time(l402_lnd_up[30s]) >= 3", lambda r: len(r) == 1)
    targets = _dashboard_targets()
    assert len(targets) >= 20
    empty = []
    for title, expr in targets:
        try:
            results = prom.query(_grafana_to_promql(expr))
        except PrometheusQueryError as exc:
            pytest.fail(f"panel {title!r}: {exc}")
        if not results:
            empty.append((title, expr))
    assert empty == []


def test_route_variable_lists_declared_routes(fed: Fed) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (var,) = [v for v in dashboard["templating"]["list"] if v["name"] == "route"]
    match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["query"]["query"])
    assert match is not None
    metric, label = match.groups()
    values = fed.prom.api(f"label/{label}/values", {"match[]": metric})
    assert sorted(values) == ["expensive", "premium"]


def test_alert_rules_load_and_evaluate_without_errors(fed: Fed) -> None:
    expected = {
        rule["alert"]
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
    }

    def all_ok(groups: list[dict[str, Any]]) -> bool:
        rules = [rule for group in groups for rule in group["rules"]]
        return {r["name"] for r in rules} == expected and all(r["health"] == "ok" for r in rules)

    try:
        groups = fed.prom.wait_for_rules(all_ok)
    except TimeoutError:
        groups = fed.prom.rule_groups()
    rules = [rule for group in groups for rule in group["rules"]]
    assert {r["name"] for r in rules} == expected
    assert {r["name"]: (r["health"], r.get("lastError", "")) for r in rules} == dict.fromkeys(
        expected, ("ok", "")
    )


def test_lnd_down_alert_goes_pending_end_to_end(fed: Fed) -> None:
    results = fed.prom.wait_for(
        'ALERTS{alertname="L402LndUnreachable"}', lambda r: len(r) == 1, timeout=30
    )
    labels = results[0]["metric"]
    assert labels["alertstate"] == "pending"  # `for: 2m` has not elapsed yet
    assert labels["severity"] == "critical"


def test_config_reload_failure_fires_end_to_end(fed: Fed) -> None:
    prom = fed.prom
    # The error counter must have been scraped at 0 before it moves, or
    # increase() cannot see the step.
    prom.wait_for('l402_config_reloads_total{result="error"} == 0', lambda r: len(r) == 1)
    assert prom.query('ALERTS{alertname="L402ConfigReloadFailed"}') == []
    fed.metrics.config_reloads.labels(result="error").inc()
    results = prom.wait_for(
        'ALERTS{alertname="L402ConfigReloadFailed", alertstate="firing"}',
        lambda r: len(r) == 1,
        timeout=30,
    )
    assert results[0]["metric"]["severity"] == "warning"
    assert results[0]["metric"]["result"] == "error"
