"""The base of every refusal the gateway answers with: one HTTP status, one reason code.

Each layer raises its own subclasses (the proxy's `ProxyError`s, the server's
`GatewayError`s); `gateway.server.errors.error_middleware` is the one place
that turns any `Refusal` into an HTTP answer, so callers branch on types and
never on status numbers. No aiohttp here: the proxy and the server share it.
"""

from __future__ import annotations


class Refusal(Exception):
    """A request the gateway answers itself. `message` is shown to the client: no secrets."""

    status: int = 500
    reason: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        retry_after: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.headers = headers

    @property
    def detail(self) -> str:
        return self.message
