"""Demo upstream for the EP212 rehearsal: the APIs the gateway sells.

Stands in for the HTTPS signal service behind l402.openagents.com, for a
pay-per-request text generator (sats4ai), and for a metered OpenAI-compatible
inference API (gateway.demo.llm). Every payload reports how many
`Authorization` headers arrived, so the rehearsal can prove the gateway
forwarded exactly one L402 credential (EP212's CDN rejected duplicates).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
SOURCE = "openagents.ep212"

_log = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Fixed, synthetic signals: deterministic so artifacts can be compared byte-for-byte.
SIGNALS: tuple[dict[str, Any], ...] = (
    {"id": "sig-btc-usd-24h", "asset": "BTC-USD", "direction": "up", "confidence": 0.72},
    {"id": "sig-eth-usd-24h", "asset": "ETH-USD", "direction": "flat", "confidence": 0.55},
    {"id": "sig-ln-fees-7d", "asset": "LN-ROUTING-FEES", "direction": "down", "confidence": 0.61},
)
TIERS = {"/ep212/premium-signal": "under-cap", "/ep212/expensive-signal": "over-cap"}


def _request_id(request: web.Request) -> str:
    """The caller's X-Request-Id when it is a sane token, else a fresh UUID."""
    given = request.headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.match(given) else str(uuid.uuid4())


def _authorization_facts(request: web.Request) -> dict[str, Any]:
    """How many Authorization headers arrived (never their values: they are secrets)."""
    count = len(request.headers.getall("Authorization", []))
    return {"authorizationForwarded": count > 0, "authorizationHeaders": count}


async def signal(request: web.Request) -> web.Response:
    route = request.path
    return web.json_response(
        {
            "ok": True,
            "source": SOURCE,
            "route": route,
            "requestId": _request_id(request),
            "signals": list(SIGNALS),
            "tier": TIERS[route],
            "note": "synthetic demo signals served behind the L402 gateway; not advice",
            **_authorization_facts(request),
        }
    )


async def text_generation(request: web.Request) -> web.Response:
    """Per-request paid endpoint: echoes the prompt, one payment per call."""
    request_id = _request_id(request)
    try:
        payload = await request.json()
    except ValueError:
        return _bad_request("bad_json", "body must be a JSON object", request_id)
    prompt = _prompt(payload)
    if prompt is None:
        return _bad_request(
            "missing_prompt",
            "send 'prompt' (a string) or sats4ai's 'input' (a list of {role, content})",
            request_id,
        )
    return web.json_response(
        {
            "ok": True,
            "model": "demo-echo",
            "text": f"echo: {prompt}",
            "requestId": request_id,
            **_authorization_facts(request),
        }
    )


def _prompt(payload: Any) -> str | None:
    """The prompt in our shape (`prompt`) or sats4ai's (`input`: chat messages, last one wins)."""
    if not isinstance(payload, dict):
        return None
    prompt = payload.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return prompt
    messages = payload.get("input")
    if isinstance(messages, list) and messages:
        last = messages[-1]
        content = last.get("content") if isinstance(last, dict) else None
        if isinstance(content, str) and content.strip():
            return content
    return None


def _bad_request(code: str, message: str, request_id: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error": code, "message": message, "requestId": request_id}, status=400
    )


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def make_signal_app(*, chunk_delay: float = 0.0) -> web.Application:
    """The EP212 routes, and the demo OpenAI-compatible `/v1/chat/completions`
    (gateway.demo.llm; `chunk_delay` seconds between its stream chunks)."""
    from gateway.demo.llm import add_llm_routes

    app = web.Application()
    add_llm_routes(app, chunk_delay=chunk_delay)
    for path in TIERS:
        app.router.add_get(path, signal)
    app.router.add_post("/api/l402/text-generation", text_generation)
    app.router.add_get("/healthz", healthz)
    return app


async def run_signal_upstream(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    started: Callable[[int], None] | None = None,
    chunk_delay: float = 0.0,
) -> None:
    """Serve the demo app until cancelled; `started` receives the bound port.

    `chunk_delay`: seconds between the demo LLM's stream chunks (gateway.demo.llm).
    """
    runner = web.AppRunner(make_signal_app(chunk_delay=chunk_delay))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = int(runner.addresses[0][1]) if runner.addresses else port
        _log.info("signal upstream listening on http://%s:%d", host, bound)
        if started is not None:
            started(bound)
        await asyncio.Event().wait()  # until the task is cancelled
    finally:
        await runner.cleanup()
