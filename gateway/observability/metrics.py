"""Every Prometheus metric the gateway exports, on one registry per process.

Label values come only from configuration (route names) and closed sets of
reason codes, never from request paths or headers, so cardinality is bounded
and no secret can reach a label.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway import __version__
from gateway.observability.localseries import Batched, RouteSeries

if TYPE_CHECKING:
    from gateway.observability.meterseries import MeterSeries

# Buckets for latencies the gateway adds itself (sub-millisecond matters) and
# for upstream / LND round trips (milliseconds to tens of seconds).
_FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

PREFIX = "l402"


@dataclass
class GatewayMetrics:
    """The gateway's metric families, bound to their own registry."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.challenges_issued = Counter(
            f"{PREFIX}_challenges_issued", "402 challenges issued", ["route"], registry=r
        )
        self.challenges_rate_limited = Counter(
            f"{PREFIX}_challenges_rate_limited",
            "Challenges refused (429) because the client exceeded challenge_rate_limit",
            ["route"],
            registry=r,
        )
        self.invoice_failures = Counter(
            f"{PREFIX}_invoice_failures",
            "Challenges that could not be minted (LND or store failure)",
            ["route", "reason"],
            registry=r,
        )
        self.paid_requests = Counter(
            f"{PREFIX}_paid_requests",
            "Requests admitted with a valid L402 credential",
            ["route"],
            registry=r,
        )
        self.tokens_consumed = Counter(
            f"{PREFIX}_tokens_consumed",
            "Single-use (per-request) tokens consumed",
            ["route"],
            registry=r,
        )
        self.auth_failures = Counter(
            f"{PREFIX}_auth_failures",
            "Credentials refused, by reason code",
            ["route", "reason"],
            registry=r,
        )
        self.upstream_requests = Counter(
            f"{PREFIX}_upstream_requests",
            "Requests proxied upstream, by status class (or error / timeout)",
            ["route", "status_class"],
            registry=r,
        )
        self.upstream_latency = Histogram(
            f"{PREFIX}_upstream_latency_seconds",
            "Time from sending the request upstream to its response headers",
            ["route"],
            buckets=_RPC_BUCKETS,
            registry=r,
        )
        self.added_latency = Histogram(
            f"{PREFIX}_gateway_added_latency_seconds",
            "Time the gateway itself adds to a paid request (total minus upstream)",
            ["route"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.lnd_rpc_latency = Histogram(
            f"{PREFIX}_lnd_rpc_latency_seconds",
            "LND RPC latency",
            ["method"],
            buckets=_RPC_BUCKETS,
            registry=r,
        )
        self.lnd_rpc_errors = Counter(
            f"{PREFIX}_lnd_rpc_errors",
            "LND RPC errors by gRPC status code",
            ["method", "code"],
            registry=r,
        )
        # Gauges say how worker processes combine (ignored in one process).
        self.lnd_up = Gauge(
            f"{PREFIX}_lnd_up",
            "1 when the last LND call succeeded",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.settled_invoices = Counter(
            f"{PREFIX}_settled_invoices",
            "Settled invoices attributed to a route",
            ["route"],
            registry=r,
        )
        self.revenue_msats = Counter(
            f"{PREFIX}_revenue_msats",
            "Revenue from settled invoices, in millisatoshis",
            ["route"],
            registry=r,
        )
        self.settle_index = Gauge(
            f"{PREFIX}_settle_index",
            "Last LND settle index processed",
            registry=r,
            multiprocess_mode="max",
        )
        self.tokens_pruned = Counter(
            f"{PREFIX}_tokens_pruned",
            "Token rows deleted because their invoice was canceled unpaid",
            registry=r,
        )
        self.pricing_fallbacks = Counter(
            f"{PREFIX}_pricing_fallbacks",
            "Challenges priced at the route's fallback because its pricing hook failed",
            ["route", "reason"],
            registry=r,
        )
        self.pricing_latency = Histogram(
            f"{PREFIX}_pricing_hook_latency_seconds",
            "Pricing hook calls, from request to validated answer or failure",
            ["route"],
            buckets=_RPC_BUCKETS,
            registry=r,
        )
        # The Payment scheme (MPP): what each scheme sold, and the sessions' money.
        self.scheme_paid_requests = Counter(
            f"{PREFIX}_scheme_paid_requests",
            "Paid requests by authentication scheme (l402, charge, session)",
            ["route", "scheme"],
            registry=r,
        )
        self.scheme_revenue_msats = Counter(
            f"{PREFIX}_scheme_revenue_msats",
            "Revenue from settled invoices by scheme (l402, charge, session deposits)",
            ["route", "scheme"],
            registry=r,
        )
        self.sessions_opened = Counter(
            f"{PREFIX}_sessions_opened", "Payment-scheme sessions opened", ["route"], registry=r
        )
        self.sessions_closed = Counter(
            f"{PREFIX}_sessions_closed",
            "Payment-scheme sessions closed, by who closed them (client, idle, admin)",
            ["route", "reason"],
            registry=r,
        )
        self.sessions_open = Gauge(
            f"{PREFIX}_sessions_open",
            "Payment-scheme sessions open now (counted by the background job's leader)",
            registry=r,
            multiprocess_mode="max",
        )
        self.session_deposits_msats = Counter(
            f"{PREFIX}_session_deposits_msats",
            "Session deposits and top-ups credited, in millisatoshis",
            ["route"],
            registry=r,
        )
        self.session_refunds = Counter(
            f"{PREFIX}_session_refunds",
            "Session refund attempts by result (succeeded, failed)",
            ["route", "result"],
            registry=r,
        )
        self.session_refunded_msats = Counter(
            f"{PREFIX}_session_refunded_msats",
            "Unspent session balances paid back, in millisatoshis (fees not included)",
            ["route"],
            registry=r,
        )
        self.shadow_challenges = Counter(
            f"{PREFIX}_shadow_challenges",
            "Requests a shadow (dry-run) route served free instead of answering 402",
            ["route"],
            registry=r,
        )
        self.shadow_price_msats = Counter(
            f"{PREFIX}_shadow_price_msats",
            "What those challenges would have asked for, in millisatoshis",
            ["route"],
            registry=r,
        )
        # Metered bundles (docs/metering.md): what was sold, served, and what it cost to know.
        self.meter_units_sold = Counter(
            f"{PREFIX}_meter_units_sold",
            "Bundle units credited to balances (one bundle per settled payment)",
            ["route", "unit"],
            registry=r,
        )
        self.meter_units_served = Counter(
            f"{PREFIX}_meter_units_served",
            "Units debited from balances for answers served (a metered pricer's: sats)",
            ["route", "unit"],
            registry=r,
        )
        self.meter_shortfall_units = Counter(
            f"{PREFIX}_meter_shortfall_units",
            "Units answers used beyond what their balance could still pay (served unpaid)",
            ["route", "unit"],
            registry=r,
        )
        self.meter_settlements = Counter(
            f"{PREFIX}_meter_settlements",
            "Metered answers settled, by what the debit was based on",
            ["route", "basis"],
            registry=r,
        )
        self.meter_usage_problems = Counter(
            f"{PREFIX}_meter_usage_problems",
            "Answers whose usage could not be read (missing, malformed, encoded, ...)",
            ["route", "problem"],
            registry=r,
        )
        self.meter_exhausted = Counter(
            f"{PREFIX}_meter_exhausted",
            "Paid requests refused with a fresh 402 because their bundle was used up",
            ["route"],
            registry=r,
        )
        self.meter_reservations_released = Counter(
            f"{PREFIX}_meter_reservations_released",
            "Reservations ended: settled by an answer, or given back (no answer delivered)",
            ["route", "how"],
            registry=r,
        )
        self.meter_balance_outstanding = Gauge(
            f"{PREFIX}_meter_balance_outstanding_units",
            "Units left in balances not yet spent, per route (refreshed every minute)",
            ["route", "unit"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.freebies = Counter(
            f"{PREFIX}_freebies",
            "Unpaid requests served free within a route's `freebies` allowance",
            ["route"],
            registry=r,
        )
        self.requests_rate_limited = Counter(
            f"{PREFIX}_requests_rate_limited",
            "Requests refused (429) by a route's `rate_limits`",
            ["route"],
            registry=r,
        )
        self.pricer_rpc_latency = Histogram(
            f"{PREFIX}_pricer_rpc_latency_seconds",
            "Aperture pricer (pricesrpc) call latency",
            ["method"],
            buckets=_RPC_BUCKETS,
            registry=r,
        )
        self.pricer_rpc_errors = Counter(
            f"{PREFIX}_pricer_rpc_errors",
            "Aperture pricer call errors by gRPC status code",
            ["method", "code"],
            registry=r,
        )
        self.pricer_reports_lost = Counter(
            f"{PREFIX}_pricer_reports_lost",
            "Usage reports a metered pricer never took after every retry (debits lost)",
            ["route"],
            registry=r,
        )
        self.config_reloads = Counter(
            f"{PREFIX}_config_reloads", "routes.yaml reloads by result", ["result"], registry=r
        )
        self.build_info = Gauge(
            f"{PREFIX}_build_info",
            "Gateway build information",
            ["version", "python"],
            registry=r,
            multiprocess_mode="max",
        )
        self.build_info.labels(version=__version__, python=platform.python_version()).set(1)
        self._routes: dict[str, RouteSeries] = {}
        self._meters: dict[str, MeterSeries] = {}
        self._pending: list[Batched] = []

    def pending(self, series: Batched) -> None:
        """A series has counts to hand over: at the end of this loop iteration (at once
        outside a running loop)."""
        self._pending.append(series)
        if len(self._pending) > 1:
            return
        loop = _running_loop()
        if loop is None:
            self.flush()
        else:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Hand every series' counts to prometheus-client (also at shutdown and scrape)."""
        pending, self._pending = self._pending, []
        for series in pending:
            series.flush()

    def route(self, name: str) -> RouteSeries:
        """The hot-path series of one route, bound once (labels() costs a lock and lookups)."""
        series = self._routes.get(name)
        if series is None:
            series = self._routes[name] = RouteSeries(self, name)
        return series

    def declare_routes(self, routes: list[str]) -> None:
        """Create zero-valued series per route so rates and alerts work from the start."""
        for route in routes:
            for family in (
                self.challenges_issued,
                self.challenges_rate_limited,
                self.paid_requests,
                self.tokens_consumed,
                self.settled_invoices,
                self.revenue_msats,
            ):
                family.labels(route=route)
            # A failed refund alerts on increase() (L402SessionRefundFailed), which cannot
            # see a series born at 1: it exists at 0 from the start.
            self.session_refunds.labels(route=route, result="failed")

    def declare_metered(self, route: str, unit: str) -> None:
        """Zero-valued series of a metered route, so its rates and alerts work from the start."""
        for family in (self.meter_units_sold, self.meter_units_served):
            family.labels(route=route, unit=unit)
        self.meter_exhausted.labels(route=route)

    def meter(self, route: str) -> MeterSeries:
        series = self._meters.get(route)
        if series is None:
            from gateway.observability.meterseries import MeterSeries  # it builds on this module

            series = self._meters[route] = MeterSeries(self, route)
        return series


def _running_loop() -> Any:
    asyncio = sys.modules.get("asyncio")
    return asyncio.events._get_running_loop() if asyncio is not None else None


def exported_metric_names() -> set[str]:
    """Every series name the gateway can export (for dashboard and alert checks)."""
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
    }
    names: set[str] = set()
    for family in GatewayMetrics().registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def backend_observer(metrics: GatewayMetrics) -> Callable[[str, float, str | None], None]:
    """Feeds the Lightning backend's call timings into the metrics (and the lnd_up gauge)."""
    unavailable = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}

    def observe(method: str, seconds: float, code: str | None) -> None:
        metrics.lnd_rpc_latency.labels(method=method).observe(seconds)
        if code is not None:
            metrics.lnd_rpc_errors.labels(method=method, code=code).inc()
        metrics.lnd_up.set(0 if code in unavailable else 1)

    return observe
