"""Typed per-request state keys (aiohttp warns about plain string keys).

Kept free of imports from the rest of the server so every module can use them.
"""

from __future__ import annotations

from aiohttp import web

from gateway.paywall.access import AccessRecord

ACCESS = web.RequestKey("access", AccessRecord)  # the request's access-log record
