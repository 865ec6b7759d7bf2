"""`report`: revenue and paid requests per route per day (`--reconcile` books what is missing)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from gateway.commands.errors import EXIT_FAILED, CommandError
from gateway.commands.tokens import NEEDS, add_via, run_with_backend

if TYPE_CHECKING:
    from gateway.commands.backends import OperatorBackend
    from gateway.config import GatewayConfig
    from gateway.store.types import ReportRow


def cmd_report(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.commands.loading import load_for_operator
    from gateway.server.admin_wire import report_to_json

    if args.days is not None and args.days < 1:
        raise CommandError("--days must be >= 1")
    if args.reconcile:
        config = load_for_operator(args.config, needs=("store", "lnd"))
        asyncio.run(_reconcile(config, sys.stderr if args.json else sys.stdout))

    async def action(backend: OperatorBackend) -> list[ReportRow]:
        return await backend.revenue_report(args.days)

    rows = run_with_backend(args.config, args.via, action)
    if args.json:
        # GET /admin/report's shape, whether the rows came from the API or the store.
        print(json.dumps({"days": args.days, "rows": [report_to_json(r) for r in rows]}, indent=2))
        return 0
    print(f"{'day':<10}  {'route':<28} {'settled':>8} {'revenue_sat':>12} {'paid_requests':>13}")
    for r in rows:
        print(
            f"{r.day:<10}  {r.route:<28} {r.settled_invoices:>8} "
            f"{r.revenue_msat / 1000:>12.3f} {r.paid_requests:>13}"
        )
    if not rows:
        print("(no settled invoices or paid requests in the period)")
    return 0


async def _reconcile(config: GatewayConfig, out: TextIO) -> None:
    """Book settled invoices of ours the ledger lacks (gateway.jobs.reconcile)."""
    from gateway.commands.backends import StoreBackend
    from gateway.commands.lnd import connect_backend
    from gateway.jobs.reconcile import reconcile
    from gateway.lightning import BackendError
    from gateway.store.types import StoreError

    backend = await StoreBackend.open(config)
    lnd = connect_backend(config)
    try:
        result = await reconcile(lnd, backend.store)
    except BackendError as exc:
        raise CommandError(f"reconcile stopped: {exc.explain()}", EXIT_FAILED) from None
    except StoreError as exc:
        raise CommandError(f"reconcile stopped: store error: {exc}", EXIT_FAILED) from None
    finally:
        await lnd.close()
        await backend.close()
    print(
        f"reconcile: {result.scanned} invoices scanned, {result.settled} settled,"
        f" {result.ours} minted here; booked {result.booked} missing"
        f" ({result.booked_msat / 1000:.3f} sat)",
        file=out,
    )


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    p = sub.add_parser("report", help="revenue and paid requests per route per day")
    with_config(p)
    add_via(p)
    p.add_argument("--days", type=int, default=None, help="only the last N days (UTC)")
    p.add_argument(
        "--json",
        action="store_true",
        help='{"days": N or null, "rows": [{day, route, settled_invoices, revenue_msat,'
        " paid_requests}]}: the admin API's shape",
    )
    p.add_argument(
        "--reconcile",
        action="store_true",
        help="first book settled invoices the ledger lacks (asks LND; opens the store)",
    )
    p.set_defaults(func=cmd_report)


__all__ = ["NEEDS", "add_parser", "cmd_report"]
