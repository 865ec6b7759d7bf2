"""Typed application keys shared by the public and admin apps."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.lightning import LndClient
from gateway.metrics import GatewayMetrics
from gateway.server.auth import Authenticator
from gateway.server.challenges import ChallengeIssuer
from gateway.server.runtime import RouteHolder
from gateway.server.usage import UsageCounter
from gateway.store.base import TokenStore

ROUTES_KEY = web.AppKey("routes", RouteHolder)
METRICS_KEY = web.AppKey("metrics", GatewayMetrics)
STORE_KEY = web.AppKey("store", TokenStore)
LND_KEY = web.AppKey("lnd", LndClient)
AUTH_KEY = web.AppKey("authenticator", Authenticator)
ISSUER_KEY = web.AppKey("issuer", ChallengeIssuer)
USAGE_KEY = web.AppKey("usage", UsageCounter)
PUBLIC_APP_KEY = web.AppKey("public_app", web.Application)
# Wall clock for token expiry and single-use leases (injectable: tests move time forward).
CLOCK_KEY = web.AppKey[Callable[[], float]]("clock")
