"""`l402-gateway mcp`: an MCP server on stdio for the operator's agent (docs/mcp.md).

It talks to the running gateway's admin API with the secret in
`admin.token_file`, like `tokens`/`revoke`/`report --via api`, and is
read-only unless started with `--allow-writes`. The tools and the SDK live in
gateway.commands.mcp_tools, imported only here and only when the command runs:
the SDK is the `mcp` extra, and the rest of the CLI never loads it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from gateway.commands import extras
from gateway.commands.errors import CommandError

NEEDS = ("admin", "listen")


def cmd_mcp(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.commands.loading import load_for_operator

    try:
        tools: Any = extras.load(extras.MCP, "gateway.commands.mcp_tools")
    except extras.ExtraMissing as exc:
        raise CommandError(f"mcp: {exc}", exc.code) from None
    config = load_for_operator(args.config, needs=NEEDS)
    asyncio.run(tools.serve(config, allow_writes=args.allow_writes))
    return 0


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    p = sub.add_parser(
        "mcp",
        help="MCP server (stdio) exposing the admin API to an agent",
        description="Serve the running gateway's admin API as MCP tools over stdio"
        " (tokens, sessions, report, routes, reload, health). Needs admin.token_file; read-only"
        " unless --allow-writes.",
    )
    with_config(p)
    p.add_argument(
        "--allow-writes",
        action="store_true",
        help="let the agent revoke tokens, close sessions and reload routes.yaml"
        " (refused otherwise)",
    )
    p.set_defaults(func=cmd_mcp)
