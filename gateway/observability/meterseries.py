"""What one metered route counts per answer, batched like a route's paid-request series.

A metered answer settles with three to four counter updates (released, basis,
units served, a usage problem); each prometheus-client update takes a lock
and, under `serve --workers N`, writes the process's memory-mapped file. They
are summed in the process and handed over once per event-loop iteration
(gateway.observability.localseries.Batched), before any later request of the same
process can be answered, so a scrape never sees an answer before its counts.
"""

from __future__ import annotations

from prometheus_client import Counter

from gateway.observability.localseries import Batched, LocalCounter
from gateway.observability.metrics import GatewayMetrics


class MeterSeries(Batched):
    """A metered route's counters (children bound on first use)."""

    def __init__(self, metrics: GatewayMetrics, route: str) -> None:
        super().__init__(metrics)
        self.route = route
        self.exhausted = self.counter(metrics.meter_exhausted.labels(route=route))
        released = metrics.meter_reservations_released
        self.settled = self.counter(released.labels(route=route, how="settled"))
        self.given_back = self.counter(released.labels(route=route, how="given_back"))
        self._children: dict[tuple[str, str], LocalCounter] = {}  # labels() once per value

    def _child(self, family: Counter, name: str, label: str, value: str) -> LocalCounter:
        key = (name, value)
        child = self._children.get(key)
        if child is None:
            labelled = family.labels(**{"route": self.route, label: value})
            child = self._children[key] = self.counter(labelled)
        return child

    def sold(self, unit: str, units: int) -> None:
        self._child(self._metrics.meter_units_sold, "sold", "unit", unit).inc(units)

    def served(self, unit: str, units: int, shortfall: int = 0) -> None:
        if units:
            self._child(self._metrics.meter_units_served, "served", "unit", unit).inc(units)
        if shortfall:
            family = self._metrics.meter_shortfall_units
            self._child(family, "shortfall", "unit", unit).inc(shortfall)

    def settlement(self, basis: str, problem: str | None) -> None:
        self._child(self._metrics.meter_settlements, "basis", "basis", basis).inc()
        if problem is not None:
            family = self._metrics.meter_usage_problems
            self._child(family, "problem", "problem", problem).inc()
