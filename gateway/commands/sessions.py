"""`l402-gateway sessions list|show|close`: Payment-scheme sessions, through a running gateway
or the store (gateway.commands.session_backends).

Nothing printed names a preimage or the buyer's return invoice (only its
payment hash, to find the refund in LND). `close` closes an open session and
pays its unspent balance back once, as a client's close does; it exits 1
when the session was not open or its refund failed (the session stays
closed: a refund is never retried; docs/runbook.md, L402SessionRefundFailed).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.commands.errors import EXIT_FAILED, CommandError
from gateway.commands.tokens import VIA_CHOICES
from gateway.server.admin_wire import MAX_PAGE, WireError
from gateway.server.session_wire import (
    SessionCursor,
    parse_refund_state,
    parse_session_id,
    parse_status,
)
from gateway.store.session_catalog import REFUND_STATES, SESSION_STATUSES

if TYPE_CHECKING:  # the parser loads none of these (aiohttp, the store, the LND client)
    from gateway.commands.session_backends import Closed, Page, SessionOps

T = TypeVar("T")
# Sections these commands read: the store or the admin API, and to close through the
# store, the refund macaroon (lightning/lnd) and the refund policy (payment).
NEEDS = ("store", "admin", "listen", "lnd", "lightning", "payment")


def run_sessions(config_path: Path, via: str, action: Callable[[SessionOps], Awaitable[T]]) -> T:
    """Open the backend, run `action`, close; store and API failures become one line."""
    import asyncio

    from gateway.commands.backends import ApiError, close_quietly, open_backend
    from gateway.commands.loading import load_for_operator
    from gateway.commands.session_backends import session_ops
    from gateway.store.types import StoreError

    config = load_for_operator(config_path, needs=NEEDS)

    async def main() -> T:
        backend = await open_backend(config, via)
        try:
            return await action(session_ops(backend, config))
        except StoreError as exc:
            raise CommandError(f"store error: {exc}", EXIT_FAILED) from None
        except ApiError as exc:
            raise CommandError(str(exc), EXIT_FAILED) from None
        except WireError as exc:
            raise CommandError(f"{backend.where} answered oddly: {exc}", EXIT_FAILED) from None
        finally:
            await close_quietly(backend)

    return asyncio.run(main())


def _when(timestamp: Any) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _msat(value: Any) -> str:
    return "-" if value is None else f"{value} msat"


def _session_id(text: str) -> bytes:
    try:
        return parse_session_id(text.strip().lower())
    except WireError as exc:
        raise CommandError(str(exc)) from None


def _checked(parse: Callable[[str | None], str | None], text: str | None, flag: str) -> str | None:
    try:
        return parse(text)
    except WireError as exc:
        raise CommandError(f"{flag}: {exc}") from None


def cmd_sessions_list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= MAX_PAGE:
        raise CommandError(f"--limit must be from 1 to {MAX_PAGE}")
    status = _checked(parse_status, args.status, "--status")
    refund = _checked(parse_refund_state, args.refund, "--refund")
    try:
        cursor = SessionCursor.decode(args.cursor) if args.cursor else None
    except WireError as exc:
        raise CommandError(f"--cursor: {exc}") from None

    async def action(ops: SessionOps) -> Page:
        return await ops.list_sessions(status, args.route, refund, args.limit, cursor)

    page = run_sessions(args.config, args.via, action)
    if args.json:
        next_cursor = page.next_cursor.encode() if page.next_cursor else None
        print(json.dumps({"sessions": page.sessions, "next_cursor": next_cursor}, indent=2))
        return 0
    print(f"{'session_id':<64}  {'route':<20} {'status':<6} {'balance_msat':>12} "
          f"{'refund':<9} {'opened':<20}")  # fmt: skip
    for s in page.sessions:
        print(
            f"{s['session_id']:<64}  {s['route']:<20} {s['status']:<6} {s['balance_msat']:>12} "
            f"{s['refund_state'] or '-':<9} {_when(s['opened_at']):<20}"
        )
    if not page.sessions:
        print("(no sessions)")
    if page.next_cursor is not None:
        print(f"(more: --cursor {page.next_cursor.encode()})")
    return 0


def describe(session: dict[str, Any], deposits: list[dict[str, Any]] | None = None) -> list[str]:
    closed = _when(session["closed_at"])
    if session["close_reason"]:
        closed += f" ({session['close_reason']})"
    refund = session["refund_state"] or "-"
    if session["refund_msat"] is not None:
        refund = f"{session['refund_msat']} msat, {refund}"
    if session["refund_fee_msat"] is not None:
        refund += f" (fee {session['refund_fee_msat']} msat)"
    lines = [
        f"session_id     {session['session_id']}",
        f"route          {session['route']}",
        f"status         {session['status']}",
        f"unit price     {_msat(session['unit_msat'])}",
        f"deposited      {_msat(session['deposited_msat'])}",
        f"spent          {_msat(session['spent_msat'])}",
        f"balance        {_msat(session['balance_msat'])}"
        + (f" ({session['held_msat']} msat held)" if session["held_msat"] else ""),
        f"opened         {_when(session['opened_at'])}",
        f"last activity  {_when(session['last_activity'])}",
        f"closed         {closed}",
        f"refund         {refund}",
    ]
    if session["refund_note"]:
        lines.append(f"refund note    {session['refund_note']}")
    if session["return_payment_hash"]:
        lines.append(
            f"return invoice payment hash {session['return_payment_hash']}, expires "
            f"{_when(session['return_invoice_expires_at'])}"
        )
    for index, deposit in enumerate(deposits or []):
        what = "deposit" if index == 0 else "top-up"
        lines.append(
            f"{what:<14} {deposit['amount_msat']} msat at {_when(deposit['credited_at'])}"
            f" (payment hash {deposit['payment_hash']})"
        )
    return lines


def cmd_sessions_show(args: argparse.Namespace) -> int:
    session_id = _session_id(args.session)

    async def action(ops: SessionOps) -> dict[str, Any] | None:
        return await ops.show_session(session_id)

    body = run_sessions(args.config, args.via, action)
    if body is None:
        raise CommandError(f"no session with id {session_id.hex()}", EXIT_FAILED)
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print("\n".join(describe(body["session"], body["deposits"])))
    return 0


def cmd_sessions_close(args: argparse.Namespace) -> int:
    session_id = _session_id(args.session)
    where: list[str] = []

    async def action(ops: SessionOps) -> Closed | None:
        where.append(ops.where)
        return await ops.close_session(session_id)

    done = run_sessions(args.config, args.via, action)
    if done is None:
        raise CommandError(f"no session with id {session_id.hex()}", EXIT_FAILED)
    if args.json:
        print(json.dumps({"session": done.session, "closed": done.closed,
                          "refund_status": done.refund_status}, indent=2))  # fmt: skip
    session = done.session
    if not done.closed:
        if not args.json:
            print("\n".join(describe(session)))
        raise CommandError(f"session {session_id.hex()}: not open (nothing done)", EXIT_FAILED)
    if not args.json:
        refund = f"{session['refund_msat']} msat" if session["refund_msat"] else "nothing owed"
        print(
            f"session {session_id.hex()} ({session['route']}): closed via {where[0]};"
            f" refund {refund}: {done.refund_status}"
        )
        if session["refund_note"]:
            print(f"refund note: {session['refund_note']}")
    return EXIT_FAILED if done.refund_status == "failed" else 0


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    def via(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--via",
            choices=VIA_CHOICES,
            default="auto",
            help="auto (default): the running gateway's admin API when it answers, else the store",
        )

    sessions = sub.add_parser("sessions", help="Payment-scheme sessions: list, show, close")
    ssub = sessions.add_subparsers(dest="sessions_command", required=True)
    p = ssub.add_parser("list", help="newest first")
    with_config(p)
    via(p)
    p.add_argument("--status", help=f"only these: {', '.join(SESSION_STATUSES)}")
    p.add_argument("--route", help="only this route's sessions")
    p.add_argument("--refund", help=f"only refunds in this state: {', '.join(REFUND_STATES)}")
    p.add_argument("--limit", type=int, default=50, help=f"at most this many (1..{MAX_PAGE})")
    p.add_argument("--cursor", help="continue a listing (printed after a full page)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sessions_list)
    p = ssub.add_parser("show", help="one session: balance, deposits, refund")
    with_config(p)
    via(p)
    p.add_argument("session", help="session id (64 hex: the deposit's payment hash)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sessions_show)
    p = ssub.add_parser("close", help="close an open session and refund its balance once")
    with_config(p)
    via(p)
    p.add_argument("session", help="session id (64 hex: the deposit's payment hash)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sessions_close)
