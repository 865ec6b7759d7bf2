"""Typed errors of the HTTP/2 engine (messages never carry header values) and error codes."""

from __future__ import annotations

from gateway.h2engine.api import FailReason
from gateway.h2engine.frames import ErrorCode

# HTTP/2 error codes the engine sends (RFC 9113 7).
NO_ERROR = int(ErrorCode.NO_ERROR)
INTERNAL_ERROR = int(ErrorCode.INTERNAL_ERROR)
REFUSED_STREAM = int(ErrorCode.REFUSED_STREAM)
CANCEL = int(ErrorCode.CANCEL)


class H2EngineError(Exception):
    """Base of the engine's errors."""


class StreamReset(H2EngineError):
    """The peer reset the stream (RST_STREAM, or a GOAWAY that refused it)."""

    def __init__(self, code: int, side: str) -> None:
        super().__init__(f"{side} reset the stream (HTTP/2 error code {code})")
        self.code = code
        self.side = side


class ConnectionGone(H2EngineError):
    """The connection carrying the stream closed."""

    def __init__(self, side: str) -> None:
        super().__init__(f"{side} connection closed")
        self.side = side


class StreamIdle(H2EngineError):
    """A wait on the peer (bytes, headers, window, writability) outlived the idle timeout."""

    def __init__(self, side: str) -> None:
        super().__init__(f"{side} made no progress within the idle stream timeout")
        self.side = side


class UpstreamUnavailable(H2EngineError):
    """No upstream stream could be opened."""

    def __init__(self, reason: FailReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason


class BadHeaders(H2EngineError):
    """Headers the engine must not send (control characters, bad names)."""
