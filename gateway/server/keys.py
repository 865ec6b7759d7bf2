"""Typed application keys: what start-up contexts, the admin app and reloads share.

The request path does not read these: the handler is built with its
collaborators (gateway.server.handler).
"""

from __future__ import annotations

from aiohttp import web

from gateway.lightning import LndClient
from gateway.observability.metrics import GatewayMetrics
from gateway.paywall.routes import RouteHolder
from gateway.server.handler import PublicHandler
from gateway.store.roles import Store

ROUTES_KEY = web.AppKey("routes", RouteHolder)
METRICS_KEY = web.AppKey("metrics", GatewayMetrics)
STORE_KEY = web.AppKey[Store]("store")
LND_KEY = web.AppKey("lnd", LndClient)
HANDLER_KEY = web.AppKey("handler", PublicHandler)
PUBLIC_APP_KEY = web.AppKey("public_app", web.Application)
