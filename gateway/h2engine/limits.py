"""Every bound and deadline of the HTTP/2 engine, in one frozen value.

Memory per stream is bounded by the receive windows: the engine acknowledges a
peer's DATA (re-opening its window) only once the bytes were handed to the
other side, so a stream never holds more than `stream_window` bytes per
direction, and a client connection never more than `connection_window` bytes
of request bodies. Worst case per client connection:
`connection_window + max_concurrent_streams * stream_window` (the second term
is upstream response data waiting for a client that does not read).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_WINDOW = 65_535  # HTTP/2's initial window; smaller ones would only slow streams
MAX_WINDOW = 2**31 - 1
MIN_HEADER_LIST = 4096


@dataclass(frozen=True, slots=True)
class H2Limits:
    max_concurrent_streams: int = 100  # per client connection (SETTINGS_MAX_CONCURRENT_STREAMS)
    max_header_list_size: int = 32 * 1024  # decoded header bytes per block, both directions
    stream_window: int = 256 * 1024  # receive window per stream, client and upstream side
    connection_window: int = 1024 * 1024  # receive window per client connection
    upstream_max_streams: int = 100  # per upstream connection (also capped by its SETTINGS)
    upstream_max_connections: int = 4  # per target
    settings_timeout: float = 10.0  # peer must acknowledge our SETTINGS (RFC 9113 6.5.3)
    idle_stream_timeout: float = 120.0  # longest wait for a peer's bytes, headers or window
    idle_connection_timeout: float = 120.0  # client connection without any stream
    upstream_idle_timeout: float = 60.0  # pooled upstream connection without any stream
    callback_timeout: float = 30.0  # Admission.decide, Ticket.answered, Ticket.failed
    sniff_timeout: float = 10.0  # first bytes of a connection, to tell HTTP/2 from HTTP/1.1
    write_batch: int = 256 * 1024  # most DATA bytes queued per send before checking backpressure
    max_write_backlog: int = 4 * 1024 * 1024  # unsent bytes before a non-reading peer is dropped
    reset_budget: int = 1000  # client RST_STREAMs allowed per 10 s ("rapid reset" guard)

    def __post_init__(self) -> None:
        problems = []
        for name in ("stream_window", "connection_window"):
            value = getattr(self, name)
            if not MIN_WINDOW <= value <= MAX_WINDOW:
                problems.append(f"{name} must be within {MIN_WINDOW}..{MAX_WINDOW}")
        if self.max_header_list_size < MIN_HEADER_LIST:
            problems.append(f"max_header_list_size must be at least {MIN_HEADER_LIST}")
        for name in (
            "max_concurrent_streams",
            "upstream_max_streams",
            "upstream_max_connections",
            "write_batch",
            "max_write_backlog",
            "reset_budget",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        for name in (
            "settings_timeout",
            "idle_stream_timeout",
            "idle_connection_timeout",
            "upstream_idle_timeout",
            "callback_timeout",
            "sniff_timeout",
        ):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive")
        if self.upstream_connection_window > MAX_WINDOW:
            problems.append("stream_window * upstream_max_streams exceeds the HTTP/2 window limit")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def upstream_connection_window(self) -> int:
        """Receive window of an upstream connection.

        Large enough that every stream can fill its own window: a client that
        stops reading stalls only its stream, never the other clients' streams
        multiplexed on the same upstream connection. Memory stays bounded by
        the per-stream windows.
        """
        return self.stream_window * self.upstream_max_streams
