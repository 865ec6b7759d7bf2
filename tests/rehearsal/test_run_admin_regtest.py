"""`make run`'s admin API: on, its secret in a 0600 file beside the config, and the banner's
curl and CLI lines work as printed (run through bash against the stack on regtest)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.regtest.network import Descriptor
from gateway.rehearsal.__main__ import banner
from gateway.rehearsal.stack import SellerStack
from tests.ops.support import REPO

pytestmark = pytest.mark.regtest


@pytest.fixture
def stack(regtest: Descriptor, tmp_path: Path) -> Iterator[SellerStack]:
    seller = SellerStack.start(regtest, tmp_path / "seller")
    yield seller
    seller.stop()


def admin_section(text: str) -> list[str]:
    section = text.split("Admin API (on;", 1)[1].splitlines()[1:]
    return [line.strip() for line in section if line.strip()]


def bash(line: str, stack: SellerStack) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "L402_GATEWAY_CONFIG": str(stack.config_path)}
    return subprocess.run(
        ["bash", "-c", line], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_banner_says_how_to_call_the_admin_api_and_it_works(
    regtest: Descriptor, stack: SellerStack
) -> None:
    assert stack.admin_token_file == stack.workdir / "admin.token"
    assert stat.S_IMODE(stack.admin_token_file.stat().st_mode) == 0o600
    secret = stack.admin_token_file.read_text().strip()
    text = banner(regtest, stack)
    assert secret not in text
    lines = admin_section(text)
    tokens_curl, routes_curl, tokens_cli, report_cli, mcp = lines

    listed = bash(tokens_curl, stack)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"tokens": [], "next_cursor": None}
    routes = json.loads(bash(routes_curl, stack).stdout)["routes"]
    assert [r["name"] for r in routes] == [
        "sats4ai-text-generation", "ep212-premium-signal", "ep212-expensive-signal",
    ]  # fmt: skip

    ran = bash(tokens_cli, stack)
    assert (ran.returncode, ran.stdout.strip().splitlines()[-1]) == (0, "(no tokens)"), ran.stderr
    ran = bash(report_cli, stack)
    assert ran.returncode == 0, ran.stderr
    # the MCP server starts against this stack's API, and ends when its stdin closes
    ran = bash(mcp.split("#", 1)[0], stack)
    assert ran.returncode == 0, ran.stderr
    assert f"the gateway's admin API at {stack.admin_url}, over stdio" in ran.stderr
    assert secret not in ran.stderr + ran.stdout
