"""Per-request series counted in the process and handed to prometheus-client once per
event-loop iteration.

Every prometheus-client update takes a lock, and under `serve --workers N`
(multiprocess mode) also checks the process id (a system call) and writes the
value into its memory-mapped file. The hot path adds to plain numbers here
instead; `GatewayMetrics.flush` (gateway.observability.metrics) applies the
sums at the end of the loop iteration, before any later request of the same
process can be answered, so a scrape never sees an answer before its counts.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

if TYPE_CHECKING:
    from gateway.observability.metrics import GatewayMetrics


class Batched:
    """Series counted in the process and handed over once per event-loop iteration;
    RouteSeries here and MeterSeries (gateway.observability.meterseries) are the kinds."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._parts: list[LocalCounter | LocalHistogram] = []
        self.dirty = False

    def counter(self, child: Counter) -> LocalCounter:
        counter = LocalCounter(self, child)
        self._parts.append(counter)
        return counter

    def touch(self) -> None:
        if not self.dirty:
            self.dirty = True
            self._metrics.pending(self)

    def flush(self) -> None:
        self.dirty = False
        for part in self._parts:
            part.flush()


class RouteSeries(Batched):
    """The per-request series of one route: four to seven prometheus-client updates per
    paid request become additions to plain numbers, applied once per loop iteration
    (one update per bucket touched, however many requests the iteration served)."""

    def __init__(self, metrics: GatewayMetrics, route: str) -> None:
        super().__init__(metrics)
        self.paid_requests = self.counter(metrics.paid_requests.labels(route=route))
        self.upstream_latency = LocalHistogram(self, metrics.upstream_latency.labels(route=route))
        self.added_latency = LocalHistogram(self, metrics.added_latency.labels(route=route))
        self._parts += [self.upstream_latency, self.added_latency]
        self._upstream_requests = metrics.upstream_requests
        self._route = route
        self._by_class: dict[str, LocalCounter] = {}

    def upstream_requests(self, status_class: str) -> LocalCounter:
        counter = self._by_class.get(status_class)
        if counter is None:
            child = self._upstream_requests.labels(route=self._route, status_class=status_class)
            counter = self._by_class[status_class] = self.counter(child)
        return counter


class LocalCounter:
    """`inc()` of a Counter child, summed until the series is flushed."""

    __slots__ = ("_child", "_count", "_series")

    def __init__(self, series: Batched, child: Counter) -> None:
        self._series = series
        self._child = child
        self._count = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self._count += amount
        self._series.touch()

    def flush(self) -> None:
        if self._count:
            count, self._count = self._count, 0.0
            self._child.inc(count)


class LocalHistogram:
    """`observe()` of a Histogram child: per-bucket counts and the sum until flushed, then
    added to the child's bucket and sum values as its own `observe` adds them (one
    bucket per observation: the first whose bound is at least the value)."""

    __slots__ = ("_bounds", "_child", "_counts", "_series", "_sum")

    def __init__(self, series: Batched, child: Histogram) -> None:
        self._series = series
        self._child = child
        self._bounds: list[float] = list(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount
        self._series.touch()

    def flush(self) -> None:
        counts = self._counts
        if not any(counts):
            return
        child = self._child
        child._sum.inc(self._sum)
        for index, count in enumerate(counts):
            if count:
                child._buckets[index].inc(count)
        self._counts = [0] * len(counts)
        self._sum = 0.0
