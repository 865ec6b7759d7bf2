"""`tokens list`, `tokens show` and `revoke`: through a running gateway or the store."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from gateway.commands.errors import EXIT_FAILED, CommandError
from gateway.server.admin_wire import MAX_PAGE, Cursor, WireError, token_state, token_to_json

if TYPE_CHECKING:  # the parser loads none of these (aiohttp, the store, the l402 core)
    from gateway.commands.backends import OperatorBackend
    from gateway.store.types import TokenInfo

T = TypeVar("T")
NEEDS = ("store", "admin", "listen")
VIA_CHOICES = ("auto", "api", "store")  # --via: the running gateway's API, or the store
REF_HELP = "token id, payment hash, macaroon or `L402 <macaroon>:<preimage>`; - reads it from stdin"


def add_via(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--via",
        choices=VIA_CHOICES,
        default="auto",
        help="auto (default): the running gateway's admin API when it answers, else the store",
    )


def run_with_backend(
    config_path: Path, via: str, action: Callable[[OperatorBackend], Awaitable[T]]
) -> T:
    """Open the backend, run `action`, close; store and API failures become one line."""
    import asyncio

    from gateway.commands.backends import ApiError, close_quietly, open_backend
    from gateway.commands.loading import load_for_operator
    from gateway.store.types import StoreError

    config = load_for_operator(config_path, needs=NEEDS)

    async def main() -> T:
        backend = await open_backend(config, via)
        try:
            return await action(backend)
        except StoreError as exc:
            raise CommandError(f"store error: {exc}", EXIT_FAILED) from None
        except ApiError as exc:
            raise CommandError(str(exc), EXIT_FAILED) from None
        except WireError as exc:
            raise CommandError(f"{backend.where} answered oddly: {exc}", EXIT_FAILED) from None
        finally:
            await close_quietly(backend)

    return asyncio.run(main())


def _when(timestamp: int | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _key(text: str) -> bytes:
    from gateway.commands.tokenref import TokenRefError, read_ref, token_key

    try:
        return token_key(read_ref(text))
    except TokenRefError as exc:
        raise CommandError(str(exc)) from None


def cmd_tokens_list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= MAX_PAGE:
        raise CommandError(f"--limit must be from 1 to {MAX_PAGE}")
    try:
        cursor = Cursor.decode(args.cursor) if args.cursor else None
    except WireError as exc:
        raise CommandError(f"--cursor: {exc}") from None

    async def action(backend: OperatorBackend) -> tuple[list[TokenInfo], Cursor | None]:
        return await backend.list_tokens(args.route, args.limit, cursor)

    tokens, next_cursor = run_with_backend(args.config, args.via, action)
    if args.json:
        body = {
            "tokens": [token_to_json(t) for t in tokens],
            "next_cursor": next_cursor.encode() if next_cursor else None,
        }
        print(json.dumps(body, indent=2))
        return 0
    print(f"{'token_id':<64}  {'route':<24} {'state':<7} {'created':<20} {'paid':<20}")
    for t in tokens:
        print(
            f"{t.token_id.hex():<64}  {t.route:<24} {token_state(t):<7} "
            f"{_when(t.created_at):<20} {_when(t.settled_at):<20}"
        )
    if not tokens:
        print("(no tokens)")
    if next_cursor is not None:
        print(f"(more: --cursor {next_cursor.encode()})")
    return 0


def describe(t: TokenInfo) -> list[str]:
    price = f"{t.price_msat} msat" + (" (single use)" if t.single_use else "")
    paid = _when(t.settled_at)
    if t.amt_paid_msat is not None:
        paid += f" ({t.amt_paid_msat} msat)"
    return [
        f"token_id      {t.token_id.hex()}",
        f"payment_hash  {t.payment_hash.hex()}",
        f"route         {t.route}" + (" (imported from Aperture)" if t.imported else ""),
        f"state         {token_state(t)}",
        f"price         {price}",
        f"created       {_when(t.created_at)}",
        f"valid until   {_when(t.valid_until) if t.valid_until else 'never expires'}",
        f"paid          {paid}",
        f"used          {_when(t.used_at)}",
        f"revoked       {_when(t.revoked_at)}",
    ]


def cmd_tokens_show(args: argparse.Namespace) -> int:
    key = _key(args.token)

    async def action(backend: OperatorBackend) -> TokenInfo | None:
        return await backend.find_token(key)

    info = run_with_backend(args.config, args.via, action)
    if info is None:
        raise CommandError(f"no token with id or payment hash {key.hex()}", EXIT_FAILED)
    if args.json:
        print(json.dumps({"token": token_to_json(info)}, indent=2))
    else:
        print("\n".join(describe(info)))
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    key = _key(args.token)

    async def action(backend: OperatorBackend) -> tuple[str, int]:
        info = await backend.find_token(key)
        if info is None:
            return f"no token with id or payment hash {key.hex()}", EXIT_FAILED
        if info.revoked_at is not None:
            return f"token {info.token_id.hex()}: already revoked", EXIT_FAILED
        done = await backend.revoke(info)
        token_id = info.token_id.hex()
        if not done.revoked:
            return f"token {token_id}: already revoked", EXIT_FAILED
        if done.cache_cleared:
            note = "the running gateway refuses it from now on"
        else:
            note = "running gateways drop it from their cache within 60 s, or at once on SIGHUP"
        return f"token {token_id} ({info.route}): revoked via {backend.where}; {note}", 0

    message, code = run_with_backend(args.config, args.via, action)
    if code:
        raise CommandError(message, code)
    print(message)
    return 0


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    ref_help = REF_HELP

    p = sub.add_parser("revoke", help="revoke a token (by id, payment hash or credential)")
    with_config(p)
    add_via(p)
    p.add_argument("token", help=ref_help)
    p.set_defaults(func=cmd_revoke)

    tokens = sub.add_parser("tokens", help="list tokens or show one")
    tsub = tokens.add_subparsers(dest="tokens_command", required=True)
    p = tsub.add_parser("list", help="newest first")
    with_config(p)
    add_via(p)
    p.add_argument("--route", help="only this route's tokens")
    p.add_argument("--limit", type=int, default=50, help=f"at most this many (1..{MAX_PAGE})")
    p.add_argument("--cursor", help="continue a listing (printed after a full page)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tokens_list)
    p = tsub.add_parser("show", help="one token: route, created, paid, used, revoked")
    with_config(p)
    add_via(p)
    p.add_argument("token", help=ref_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tokens_show)
