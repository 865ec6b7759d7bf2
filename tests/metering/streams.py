"""OpenAI-compatible answers built for the tests (the shapes real upstreams send)."""

from __future__ import annotations

import json


def usage_object(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def chat_json(contents: list[str], prompt: int, completion: int) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "".join(contents)}}
            ],
            "usage": usage_object(prompt, completion),
        }
    ).encode()


def sse_event(payload: object, *, eol: str = "\n") -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}{eol}{eol}".encode()


def chat_stream(
    contents: list[str], prompt: int | None, completion: int, *, eol: str = "\n"
) -> bytes:
    """Content chunks (usage null, as with include_usage), a usage chunk, then [DONE].

    `prompt` None: no usage chunk (include_usage off)."""
    out = b""
    for text in contents:
        chunk: dict[str, object] = {
            "object": "chat.completion.chunk",
            "choices": [{"delta": {"content": text}}],
        }
        if prompt is not None:
            chunk["usage"] = None
        out += sse_event(chunk, eol=eol)
    if prompt is not None:
        out += sse_event(
            {
                "object": "chat.completion.chunk",
                "choices": [],
                "usage": usage_object(prompt, completion),
            },
            eol=eol,
        )
    return out + sse_event("[DONE]", eol=eol)
