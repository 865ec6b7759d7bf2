"""Embeddable L402 middleware: sell routes of an existing aiohttp or ASGI (FastAPI,
Starlette) app in its own process, on the proxy's core, store, LND client and metrics.

See README.md ("Embed it") and docs/embedding.md.
"""

from gateway.embed.aiohttp_embed import PAID
from gateway.embed.asgi import STATE_KEY, L402Middleware
from gateway.embed.gate import Paid
from gateway.embed.l402 import L402
from gateway.embed.settings import LndSettings, PricedRoute
from gateway.paywall.refusals import NotStarted

__all__ = [
    "L402",
    "PAID",
    "STATE_KEY",
    "L402Middleware",
    "LndSettings",
    "NotStarted",
    "Paid",
    "PricedRoute",
]
