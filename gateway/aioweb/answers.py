"""Sending a refusal's answer (gateway.paywall.answers renders it) from aiohttp."""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from gateway.paywall.answers import Answer, is_grpc_content_type, refusal_answer
from gateway.paywall.refusals import Refusal


def is_grpc(request: web.BaseRequest) -> bool:
    return is_grpc_content_type(request.headers.get("Content-Type", ""))


def answer_response(answer: Answer) -> web.Response:
    return web.Response(
        status=answer.status, body=answer.body or None, headers=CIMultiDict(answer.headers)
    )


def render(request: web.BaseRequest, exc: Refusal) -> web.Response:
    """The HTTP answer to any refusal."""
    return answer_response(refusal_answer(exc, grpc=is_grpc(request)))
