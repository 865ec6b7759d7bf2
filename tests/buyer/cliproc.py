"""Run `l402-buyer` as a real subprocess (asyncio, so a test server in this loop keeps serving)."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.buyer.settings import ENV_EXECUTOR_TIMEOUT, ENV_EXECUTOR_TOKEN, ENV_EXECUTOR_URL

CLI = (sys.executable, "-m", "gateway.buyer")
DEADLINE = 60.0  # one CLI run; a hang fails the test instead of stalling the suite


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def base_env(**extra: str) -> dict[str, str]:
    """A minimal environment: no HOME, so nothing can touch the real user's cache."""
    env = {"PATH": os.environ.get("PATH", "")}
    env.update(extra)
    return env


def executor_env(base_url: str, token: str) -> dict[str, str]:
    return {ENV_EXECUTOR_URL: base_url, ENV_EXECUTOR_TOKEN: token, ENV_EXECUTOR_TIMEOUT: "10000"}


async def run_cli(
    args: Iterable[str], env: Mapping[str, str], *, stdin: bytes | None = None, **kw: Any
) -> Run:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env=dict(env),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **kw,
    )  # fmt: skip
    async with asyncio.timeout(DEADLINE):
        out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def secret_forms(macaroons: Iterable[str], preimages: Iterable[bytes]) -> set[str]:
    """Every spelling of the secrets a leak could take: base64 (std, URL-safe, unpadded), hex."""
    forms: set[str] = set()
    for text in macaroons:
        raw = base64.b64decode(text)
        urlsafe = base64.urlsafe_b64encode(raw).decode()
        forms |= {
            text,
            text.rstrip("="),
            urlsafe,
            urlsafe.rstrip("="),
            raw.hex(),
            raw.hex().upper(),
        }
        forms.add(text[:40])  # a truncated leak is still a leak
    for preimage in preimages:
        forms |= {preimage.hex(), preimage.hex().upper()}
    return forms


def leaks(text: str, forms: Iterable[str]) -> list[str]:
    """The secret forms found in `text` (shown shortened in a failure message)."""
    return [form[:12] + "..." for form in forms if form in text]
