"""`prune`: delete token rows whose invoice LND canceled unpaid (gateway.jobs.pruning)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.commands.errors import EXIT_FAILED, CommandError

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

# One wording for `prune --help` and the README (tests/ops/test_readme_commands.py).
PRUNE_HELP = "delete token rows whose invoice LND canceled unpaid (never paid or used ones)"


def cmd_prune(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.commands.loading import load_for_operator

    if args.older_than_days is not None and args.older_than_days < 1:
        raise CommandError("--older-than-days must be >= 1")
    config = load_for_operator(args.config, needs=("store", "lnd"))
    return asyncio.run(_prune(config, args.older_than_days, args.dry_run))


async def _prune(config: GatewayConfig, older_than_days: int | None, dry_run: bool) -> int:
    """Rounds until no candidates remain; exit 1 when LND or the store failed."""
    # Imported here: the parser loads none of this, and prometheus-client must not be
    # loaded before `serve` sets up multiprocess metrics (gateway.server.workers).
    from gateway.commands.backends import StoreBackend
    from gateway.commands.lnd import connect_backend
    from gateway.jobs.pruning import DAY_SECONDS, DEFAULT_OLDER_THAN_DAYS, PruneResult, TokenPruner
    from gateway.observability.metrics import GatewayMetrics
    from gateway.store.types import StoreError

    days = older_than_days or config.store.prune_after_days or DEFAULT_OLDER_THAN_DAYS
    verb = "would delete" if dry_run else "deleted"
    lnd = connect_backend(config)
    try:
        backend = await StoreBackend.open(config)
    except BaseException:
        await lnd.close()
        raise
    pruner = TokenPruner(lnd, backend.store, GatewayMetrics(), days * DAY_SECONDS, dry_run=dry_run)
    now = int(time.time())
    total = PruneResult(0, 0, 0)
    print(f"pruning unpaid tokens older than {days} day(s){' (dry run)' if dry_run else ''}")
    try:
        while True:
            result = await pruner.prune_once(now)
            total += result
            print(
                f"round: checked {result.checked}, {verb} {result.deleted}, kept {result.kept}"
                f" ({result.not_found} unknown to LND)",
                flush=True,
            )
            if result.finished or result.error is not None:
                break
    except StoreError as exc:
        raise CommandError(f"store error: {exc}", EXIT_FAILED) from None
    finally:
        await lnd.close()
        await backend.close()
    print(f"total: checked {total.checked}, {verb} {total.deleted}, kept {total.kept}")
    if total.error is not None:
        raise CommandError(
            f"stopped: LND error {total.error}; the remaining rows were kept", EXIT_FAILED
        )
    return 0


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    p = sub.add_parser(
        "prune",
        help=PRUNE_HELP,
        description=f"{PRUNE_HELP[0].upper()}{PRUNE_HELP[1:]}: rows older than the grace period,"
        " with no settlement booked, never used, whose invoice LND reports CANCELED (LND cancels"
        " expired unpaid invoices). Rows of invoices LND does not know are kept.",
    )
    with_config(p)
    p.add_argument(
        "--older-than-days",
        type=int,
        default=None,
        metavar="N",
        help="only rows older than N days (default: store.prune_after_days, or 7 when that is 0)",
    )
    p.add_argument("--dry-run", action="store_true", help="ask LND, but delete nothing")
    p.set_defaults(func=cmd_prune)
