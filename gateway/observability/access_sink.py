"""Where the access line goes when logging is the gateway's own (gateway.observability.logsetup).

The paywall's one access-log writer (gateway.paywall.access) hands its fields
here first. When `logsetup.configure` installed the gateway's handler and
nothing else listens to `gateway.access` (no other handler, no test capture),
a line every request keeps (paid or served: the access sampler never drops
those) is formatted straight from the fields and queued for one write per
event-loop iteration; otherwise (a refusal the sampler may drop, an embedding
app's own logging, a test's capture) the caller logs it as a record. Kept
tiny: the paywall imports it, not the logging set-up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

Sink = Callable[[Mapping[str, object]], bool]
_sink: Sink | None = None


def install(sink: Sink | None) -> None:
    global _sink
    _sink = sink


def write(fields: Mapping[str, object]) -> bool:
    """True when the line was taken; False: log it as a `gateway.access` record."""
    sink = _sink
    return sink is not None and sink(fields)
