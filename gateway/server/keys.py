"""Typed application keys: what start-up contexts, the admin app and reloads share.

The request path does not read these: the handler is built with its
collaborators (gateway.server.handler).
"""

from __future__ import annotations

from aiohttp import web

from gateway.lightning.backend import Backend
from gateway.observability.metrics import GatewayMetrics
from gateway.paywall.routes import RouteHolder
from gateway.server.entry import PublicEntry
from gateway.server.handler import PublicHandler
from gateway.server.targets import RouteTargets
from gateway.store.roles import Store

ROUTES_KEY = web.AppKey("routes", RouteHolder)
TARGETS_KEY = web.AppKey("targets", RouteTargets)
METRICS_KEY = web.AppKey("metrics", GatewayMetrics)
STORE_KEY = web.AppKey[Store]("store")
BACKEND_KEY = web.AppKey[Backend]("lightning")
HANDLER_KEY = web.AppKey("handler", PublicHandler)
ENTRY_KEY = web.AppKey("entry", PublicEntry)  # the public listener's request handler
PUBLIC_APP_KEY = web.AppKey("public_app", web.Application)
BACKGROUND_KEY = web.AppKey[tuple[str, ...]]("background")  # the jobs running ("pruner", ...)
