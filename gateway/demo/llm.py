"""A demo OpenAI-compatible inference upstream, for metering tests and the rehearsal.

`POST /v1/chat/completions` answers like an OpenAI-compatible server, with
token counts anyone can predict from the request:

- prompt_tokens = the whitespace-separated words of every message's text;
- completion_tokens = `max_completion_tokens`, else `max_tokens` (at most
  100000), else 16; the answer is that many words `w1 w2 ...`, one token each;
- `stream: false` (default): one JSON `chat.completion` with `usage`;
- `stream: true`: SSE, one `chat.completion.chunk` per token, a finishing
  chunk, then, when `stream_options.include_usage` is true, a chunk with
  `choices: []` and the `usage` (content chunks then carry `usage: null`),
  then `data: [DONE]`;
- `X-Demo-Usage-Tokens` on every answer: the total, for routes that read usage
  from a header;
- a pause between chunks: the app's `chunk_delay` (seconds), or per request
  `X-Demo-Chunk-Delay-Ms` (0-5000), to make long streams.

Served by `l402-gateway signal-upstream` beside the EP212 payloads.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

MODEL = "demo-llm"
DEFAULT_COMPLETION = 16
MAX_COMPLETION = 100_000
MAX_DELAY_MS = 5000
USAGE_HEADER = "X-Demo-Usage-Tokens"
CHUNK_DELAY = web.AppKey("demo_llm_chunk_delay", float)


def count_prompt(messages: list[Any]) -> int:
    words = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    words += len(part["text"].split())
    return words


def count_completion(payload: dict[str, Any]) -> int | None:
    """The completion length asked for; None when a ceiling is present but not a positive int."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return None
        return min(value, MAX_COMPLETION)
    return DEFAULT_COMPLETION


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return web.json_response(body, status=status)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _delay(request: web.Request) -> float | None:
    given = request.headers.get("X-Demo-Chunk-Delay-Ms")
    if given is None:
        return request.app.get(CHUNK_DELAY, 0.0)
    if not given.isdigit() or int(given) > MAX_DELAY_MS:
        return None
    return int(given) / 1000


async def chat_completions(request: web.Request) -> web.StreamResponse:
    try:
        payload = await request.json()
    except ValueError:
        return _error(400, "the body must be JSON")
    if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
        return _error(400, "'messages' must be a list")
    completion = count_completion(payload)
    if completion is None:
        return _error(400, "max_tokens must be a positive integer")
    delay = _delay(request)
    if delay is None:
        return _error(400, f"X-Demo-Chunk-Delay-Ms must be 0..{MAX_DELAY_MS}")
    prompt = count_prompt(payload["messages"])
    usage = _usage(prompt, completion)
    words = [f"w{i}" for i in range(1, completion + 1)]
    headers = {USAGE_HEADER: str(prompt + completion)}
    if not payload.get("stream"):
        answer = {
            "id": "chatcmpl-demo",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(words)},
                    "finish_reason": "length",
                }
            ],
            "usage": usage,
        }
        return web.json_response(answer, headers=headers)
    options = payload.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    response = web.StreamResponse(
        headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)

    async def send(chunk: dict[str, Any] | str) -> None:
        data = chunk if isinstance(chunk, str) else json.dumps(chunk, separators=(",", ":"))
        await response.write(f"data: {data}\n\n".encode())

    def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": "chatcmpl-demo",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if include_usage:
            body["usage"] = None
        return body

    await send(chunk({"role": "assistant", "content": ""}))
    for i, word in enumerate(words):
        if delay:
            await asyncio.sleep(delay)
        await send(chunk({"content": word if i == 0 else f" {word}"}))
    await send(chunk({}, "length"))
    if include_usage:
        await send(
            {
                "id": "chatcmpl-demo",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": MODEL,
                "choices": [],
                "usage": usage,
            }
        )
    await send("[DONE]")
    await response.write_eof()
    return response


def add_llm_routes(app: web.Application, *, chunk_delay: float = 0.0) -> None:
    app[CHUNK_DELAY] = chunk_delay
    app.router.add_post("/v1/chat/completions", chat_completions)
