"""Helpers for the operator-surface tests: admin secrets and CLI subprocesses."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECRET = "a" * 24 + "0123456789abcdef0123456789abcdef"  # 56 characters


def write_secret(path: Path, secret: str = SECRET, mode: int = 0o600) -> Path:
    path.write_text(secret + "\n")
    path.chmod(mode)
    return path


def bearer(secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@dataclass
class Ran:
    code: int
    out: str
    err: str


async def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Ran:
    """`python -m gateway ARGS` as an operator runs it, without blocking the test's loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())
