"""`l402-gateway`: the operator's command line (commands live in gateway.commands).

Every error a person can cause (a bad file, a busy port, a wrong DSN, an
unknown token) ends as one clear line on stderr and a non-zero exit, never
as a traceback: 2 = bad arguments or configuration (nothing was done),
1 = the command ran and failed, 130 = interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

# grpc's C core writes its own INFO lines (TLS handshakes, reconnects) to stderr, beside
# our JSON log lines; only its errors belong there. Set before grpc is first imported
# (workers inherit it); an operator's own GRPC_VERBOSITY wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from gateway import __version__
from gateway.commands.errors import CommandError

DEFAULT_CONFIG = Path("/etc/l402-gateway/routes.yaml")

# The commands of each command module: `main` builds only the parser of the command being
# run (all of them for --help), so `serve` starts its workers without loading the others.
SERVING = ("serve", "check-config", "signal-upstream")
_GROUPS = (
    (SERVING, "serving"),
    (("revoke", "tokens"), "tokens"),
    (("report",), "report"),
    (("prune",), "prune"),
    (("admin-token",), "admintoken"),
    (("mcp",), "mcp_command"),  # mcp: the admin API for an agent (stdio)
    (("sessions",), "sessions"),  # sessions list|show|close (Payment scheme)
    (("convert-aperture", "import-aperture"), "aperture"),
)


def with_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", "-c", type=Path, default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}"
    )


def _add(group: str, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    if group == "aperture":
        from gateway.aperture.commands import add_convert_parser, add_import_parser

        add_convert_parser(sub)  # convert-aperture: aperture.yaml -> routes.yaml
        add_import_parser(sub)  # import-aperture: Aperture's root keys -> our store
        return
    module = importlib.import_module(f"gateway.commands.{group}")
    if group == "admintoken":
        module.add_parser(sub)
    elif hasattr(module, "add_parsers"):
        module.add_parsers(sub, with_config)
    else:
        module.add_parser(sub, with_config)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser, or only `command`'s (and its module's) when it is known."""
    parser = argparse.ArgumentParser(
        prog="l402-gateway", description="Aperture-compatible L402 payment gateway"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for names, group in _GROUPS:
        if command is None or command in names:
            _add(group, sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    first = next((a for a in arguments if not a.startswith("-")), None)
    known = any(first in names for names, _ in _GROUPS)
    args = build_parser(first if known else None).parse_args(arguments)
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
