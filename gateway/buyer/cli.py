"""`l402-buyer`: the EP212 rehearsal (`ep212`), a generic paying `fetch`, and a Payment
`session` (gateway.buyer.session_cli).

`fetch` keeps paid credentials in a per-user cache by default
($XDG_CACHE_HOME/l402-buyer/credentials.json, else ~/.cache/...; directory
0700, file 0600), so the same request twice pays once; `--cache FILE` picks
another file, `--no-cache` keeps nothing.

Exit codes: 0 success, 1 the run failed (with `--json`, `{"ok": false,
"code": ..., "error": ...}` on stdout), 2 bad usage, 130 interrupted. A
reader that closes the pipe early does not change the exit code (see
`gateway.buyer.console`). Output never contains a macaroon or preimage:
payments are identified by `preimage:<16 hex>` proof references, and the
body of a 401/402 answer (which carries the challenge) is never printed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence

from gateway import __version__

EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l402-buyer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    ep = sub.add_parser("ep212", help="run the EP212 rehearsal (settings from the environment)")
    ep.add_argument("--json", action="store_true", help="print summary JSON")
    ep.add_argument("--mode", choices=("regtest", "live"), default="regtest")
    ep.add_argument("--artifact-dir", help="where summary.json and events.jsonl go")
    fetch = sub.add_parser("fetch", help="request a URL, paying an L402 challenge within a cap")
    fetch.add_argument("url", help="the http(s) URL to request")
    fetch.add_argument("--max-msats", type=int, required=True, help="most one payment may cost")
    fetch.add_argument("--method", default="GET", help="HTTP method (default GET)")
    fetch.add_argument("--data", help="request body")
    fetch.add_argument("--header", action="append", help="'Name: value' (repeatable)")
    fetch.add_argument("--json", action="store_true", help="print a JSON report")
    fetch.add_argument("--network", help="required invoice network (bc, tb, tbs, bcrt)")
    fetch.add_argument("--allow-host", action="append", help="allowlist (repeatable)")
    fetch.add_argument("--block-host", action="append", help="blocklist (repeatable)")
    where = fetch.add_mutually_exclusive_group()
    where.add_argument(
        "--cache",
        metavar="FILE",
        help="credential cache file (created 0600; default "
        "$XDG_CACHE_HOME/l402-buyer/credentials.json or ~/.cache/l402-buyer/credentials.json)",
    )
    where.add_argument(
        "--no-cache", action="store_true", help="keep no credential (every call pays again)"
    )
    fetch.add_argument("--refresh", action="store_true", help="ignore a cached credential")
    fetch.add_argument("--confirm", action="store_true", help="ask on the terminal before paying")
    fetch.add_argument(
        "--prefer",
        default="l402,payment",
        help="schemes to answer a 402 with, in order (l402, payment; default l402,payment)",
    )
    p = sub.add_parser("session", help="run a Payment-scheme session (open, requests, close)")
    p.add_argument("url", help="the http(s) URL the session is for")
    p.add_argument("--max-msats", type=int, required=True, help="most one unit may cost")
    p.add_argument("--max-deposit-msats", type=int, required=True, help="most one deposit may be")
    p.add_argument("--method", default="GET", help="HTTP method of every request (default GET)")
    p.add_argument("--data", help="body of every bearer request (JSON is sent as JSON)")
    p.add_argument("--requests", type=int, default=1, help="bearer requests to send (default 1)")
    p.add_argument("--stream", action="store_true", help="read each answer as an event stream")
    p.add_argument("--network", help="required invoice network (bc, tb, tbs, bcrt)")
    p.add_argument("--artifact-dir", help="where summary.json and events.jsonl go")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ if env is None else env
    from gateway.buyer import commands, console

    try:
        if args.command == "ep212":
            return commands.ep212_command(args, env)
        if args.command == "session":
            return commands.session_command(args, env)
        return commands.fetch_command(args, env)
    except KeyboardInterrupt:
        console.err("\nl402-buyer: interrupted")
        return EXIT_INTERRUPTED
