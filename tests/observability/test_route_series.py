"""The per-request series counted in the process (gateway.observability.localseries.RouteSeries)
export exactly what prometheus-client's own calls would, once flushed: after the event-loop
iteration, or at once outside a loop. (They write into the client's bucket and sum values:
this also guards that use of its internals against a library upgrade.)"""

from __future__ import annotations

import asyncio
import random

from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.observability.metrics import GatewayMetrics

VALUES = [0.0, 0.0001, 0.00024, 0.00025, 0.0003, 0.004, 0.2, 1.0, 2.5, 30.0, 31.0]


def samples(
    registry: CollectorRegistry, prefix: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name.startswith(prefix) and not s.name.endswith("_created")
    }


def test_flushed_series_export_what_direct_observations_would() -> None:
    batched, direct = GatewayMetrics(), GatewayMetrics()
    series = batched.route("premium")
    rng = random.Random(7)
    values = VALUES + [rng.uniform(0, 40) for _ in range(200)]
    for value in values:
        series.upstream_latency.observe(value)
        series.added_latency.observe(value / 100)
        series.paid_requests.inc()
        series.upstream_requests("2xx").inc()
        direct.upstream_latency.labels(route="premium").observe(value)
        direct.added_latency.labels(route="premium").observe(value / 100)
        direct.paid_requests.labels(route="premium").inc()
        direct.upstream_requests.labels(route="premium", status_class="2xx").inc()
    series.upstream_requests("timeout").inc(2)
    direct.upstream_requests.labels(route="premium", status_class="timeout").inc(2)
    # outside a running loop every update is handed over at once
    assert samples(batched.registry, "l402_") == samples(direct.registry, "l402_")


def test_inside_a_loop_counts_reach_the_registry_at_the_end_of_the_iteration() -> None:
    metrics = GatewayMetrics()
    series = metrics.route("premium")

    def paid() -> float | None:
        return metrics.registry.get_sample_value("l402_paid_requests_total", {"route": "premium"})

    async def requests() -> tuple[float | None, float | None]:
        for _ in range(5):
            series.paid_requests.inc()
            series.added_latency.observe(0.0002)
        during = paid()
        await asyncio.sleep(0)
        return during, paid()

    during, after = asyncio.run(requests())
    assert (during, after) == (0.0, 5.0)
    count = metrics.registry.get_sample_value(
        "l402_gateway_added_latency_seconds_count", {"route": "premium"}
    )
    assert count == 5.0


def test_a_histogram_child_still_has_what_the_series_writes_into() -> None:
    registry = CollectorRegistry()
    child = Histogram("h", "h", ["route"], registry=registry, buckets=(0.1, 1.0)).labels(route="a")
    assert list(child._upper_bounds) == [0.1, 1.0, float("inf")]
    assert len(child._buckets) == 3
    child._sum.inc(0.5)
    child._buckets[1].inc(1)
    assert registry.get_sample_value("h_bucket", {"route": "a", "le": "1.0"}) == 1.0
    assert registry.get_sample_value("h_sum", {"route": "a"}) == 0.5
    Counter("c", "c", registry=registry).inc()  # and counters still take an amount
