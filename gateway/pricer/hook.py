"""Dynamic prices: ask the operator's pricing service at challenge time, fall back on failure.

A route with `pricing:` takes its price from an HTTP call made while its 402
challenge is being minted, as Aperture's pricer does over gRPC. The gateway
POSTs `{"route", "method", "path", "headers"}` (the normalised path without
its query, and only the header names the route lists) and expects
`{"price_msats": <int>}` back within `timeout_seconds`. The answer must be an
integer in 1..`max_price`: anything else (timeout, connection error, a status
other than 200, a body that is not that JSON, a price out of range) makes the
challenge use the route's fallback price, counted in
`l402_pricing_fallbacks_total{route, reason}`. A pricing failure never turns
into an error for the buyer: the fallback is a price the operator chose.

Unlike Aperture, a price of 0 from the hook does not make the request free:
a hook bug must not give the API away, so 0 is invalid and the fallback
applies. Nothing is cached: the price may depend on load or time, one
loopback call costs about what the invoice itself costs, and challenges are
already rate limited per client.

The price is fixed into that one challenge (invoice amount, token record);
the token admits requests on its route, like any token of the route, and is
never re-priced later.

The hook is trusted (the operator's own service) and belongs on a private
network: it decides what buyers pay. Its session is the gateway's own small
pool, separate from the upstream pool, without cookies, proxies from the
environment or redirects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp

from gateway.config.model import PricingHook
from gateway.observability.metrics import GatewayMetrics
from gateway.pricer.prices import Fallback, Price, PriceQuery

log = logging.getLogger("gateway.pricing")

MAX_ANSWER_BYTES = 4096  # `{"price_msats": ...}` needs a few dozen
POOL_LIMIT = 32  # concurrent hook calls; more wait for a connection within their deadline


class InvalidPrice(ValueError):
    """The hook's answer is not `{"price_msats": <int in 1..max>}`; the text is secret-free."""


def parse_answer(raw: bytes, maximum: int) -> int:
    """The price in an answer body; raises InvalidPrice (pure: tested without a server)."""
    if len(raw) > MAX_ANSWER_BYTES:
        raise InvalidPrice(f"answer larger than {MAX_ANSWER_BYTES} bytes")
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidPrice("answer is not JSON") from None
    if not isinstance(document, dict) or "price_msats" not in document:
        raise InvalidPrice('answer is not an object with "price_msats"')
    price = document["price_msats"]
    if isinstance(price, bool) or not isinstance(price, int):
        raise InvalidPrice("price_msats is not an integer")
    if not 1 <= price <= maximum:
        raise InvalidPrice(f"price_msats outside 1..{maximum}")
    return price


class PriceHook:
    """Calls pricing hooks over its own connection pool; never raises for a hook failure."""

    def __init__(self, session: aiohttp.ClientSession, metrics: GatewayMetrics) -> None:
        self._session = session
        self._metrics = metrics

    @classmethod
    def create(cls, metrics: GatewayMetrics) -> PriceHook:
        """A hook client owning its session; call inside the running event loop."""
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_LIMIT, ttl_dns_cache=60),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),  # each call has its own deadline
            trust_env=False,
            raise_for_status=False,
        )
        return cls(session, metrics)

    async def close(self) -> None:
        await self._session.close()

    async def price(self, hook: PricingHook, query: PriceQuery) -> Price:
        """The hook's price for `query`, or `hook.fallback_msat` when it cannot give one."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(hook.timeout_seconds):
                price = await self._ask(hook, query)
        except TimeoutError:
            return self._fall_back(hook, query.route, Fallback.TIMEOUT, "no answer in time")
        except _BadStatus as exc:
            return self._fall_back(hook, query.route, Fallback.STATUS, f"HTTP {exc.status}")
        except InvalidPrice as exc:
            return self._fall_back(hook, query.route, Fallback.INVALID, str(exc))
        except Exception as exc:  # a hook failure must never fail the challenge
            return self._fall_back(hook, query.route, Fallback.ERROR, type(exc).__name__)
        finally:
            elapsed = time.perf_counter() - started
            self._metrics.pricing_latency.labels(route=query.route).observe(elapsed)
        return Price(price)

    async def _ask(self, hook: PricingHook, query: PriceQuery) -> int:
        async with self._session.post(
            hook.url, json=query.body(), allow_redirects=False
        ) as response:
            if response.status != 200:
                raise _BadStatus(response.status)
            raw = await _read_bounded(response.content, MAX_ANSWER_BYTES)
        return parse_answer(raw, hook.max_msat)

    def _fall_back(self, hook: PricingHook, route: str, reason: Fallback, detail: str) -> Price:
        self._metrics.pricing_fallbacks.labels(route=route, reason=reason.value).inc()
        log.warning(
            "pricing hook failed; challenge uses the fallback price",
            extra={"route": route, "error": f"{reason.value}: {detail}"},
        )
        return Price(hook.fallback_msat, reason)


class _BadStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def _read_bounded(content: aiohttp.StreamReader, limit: int) -> bytes:
    """At most `limit` + 1 bytes: enough to tell an answer that is too large."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)
