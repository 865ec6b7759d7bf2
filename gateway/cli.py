"""`l402-gateway`: the operator's command line (commands live in gateway.commands).

Every error a person can cause (a bad file, a busy port, a wrong DSN, an
unknown token) ends as one clear line on stderr and a non-zero exit, never
as a traceback: 2 = bad arguments or configuration (nothing was done),
1 = the command ran and failed, 130 = interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# grpc's C core writes its own INFO lines (TLS handshakes, reconnects) to stderr, beside
# our JSON log lines; only its errors belong there. Set before grpc is first imported
# (workers inherit it); an operator's own GRPC_VERBOSITY wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from gateway import __version__
from gateway.commands import admintoken, mcp_command, prune, report, serving, sessions, tokens
from gateway.commands.errors import CommandError

DEFAULT_CONFIG = Path("/etc/l402-gateway/routes.yaml")


def with_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", "-c", type=Path, default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l402-gateway", description="Aperture-compatible L402 payment gateway"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serving.add_parsers(sub, with_config)
    tokens.add_parsers(sub, with_config)
    report.add_parser(sub, with_config)
    prune.add_parser(sub, with_config)
    admintoken.add_parser(sub)
    mcp_command.add_parser(sub, with_config)  # mcp: the admin API for an agent (stdio)
    sessions.add_parsers(sub, with_config)  # sessions list|show|close (Payment scheme)
    from gateway.aperture.commands import add_convert_parser, add_import_parser

    add_convert_parser(sub)  # convert-aperture: aperture.yaml -> routes.yaml
    add_import_parser(sub)  # import-aperture: Aperture's root keys -> our store
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except CommandError as exc:
        print(f"l402-gateway: {exc}" if "\n" not in str(exc) else str(exc), file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
