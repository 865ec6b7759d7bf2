"""`l402-gateway`: serve, check-config, revoke, report, prune, signal-upstream."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from gateway import __version__
from gateway.config import ConfigErrors, load_config
from gateway.server.runtime import RuntimeRoutes

DEFAULT_CONFIG = Path("/etc/l402-gateway/routes.yaml")
CLI_STORE_TIMEOUT = 30.0  # operator commands may scan a large store; serving uses store.timeout


def _load(path: Path, *, check_files: bool = True) -> int | None:
    """Validate; on error print every problem (file:line: field: message) and return 2."""
    try:
        config = load_config(path, check_files=check_files)
        if check_files:  # targets load CA files, which must then exist
            RuntimeRoutes.from_config(config)
    except ConfigErrors as exc:
        print(str(exc), file=sys.stderr)
        print(f"{path}: {len(exc.errors)} error(s); not starting", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway import logs

    failed = _load(args.config)
    if failed is not None:
        return failed
    if args.workers < 1:
        print("--workers must be >= 1", file=sys.stderr)
        return 2
    try:
        logs.configure(args.log_level, log_file=args.log_file)
    except logs.LogSetupError as exc:
        print(f"{exc}; not starting", file=sys.stderr)
        return 2
    if args.workers > 1:
        from gateway.server.workers import supervise

        return supervise(args.config, args.workers, args.log_level, args.log_file)
    # Imported only here: prometheus-client must not be loaded before the supervisor
    # has set up multiprocess metrics (gateway.server.workers).
    from gateway.server.serve import serve

    asyncio.run(serve(args.config))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    failed = _load(args.config, check_files=not args.skip_file_checks)
    if failed is not None:
        return failed
    config = load_config(args.config, check_files=not args.skip_file_checks)
    print(f"{args.config}: OK, {len(config.routes)} route(s)")
    for route in config.routes.routes:
        price = "free" if route.is_free else f"{route.price_msat} msat"
        print(
            f"  {route.name}: {route.path.pattern} -> {route.upstream} ({price}, "
            f"{route.token_mode.value})"
        )
    return 0


async def _with_store(config_path: Path, action: str, arg: str | None, days: int | None) -> int:
    from gateway.store import open_store

    config = load_config(config_path, check_files=False)
    store = await open_store(config.store.url, config.base_dir, timeout=CLI_STORE_TIMEOUT)
    try:
        if action == "revoke":
            assert arg is not None
            try:
                revoked = await store.revoke(arg)
            except ValueError as exc:
                print(f"invalid token id: {exc}", file=sys.stderr)
                return 2
            if not revoked:
                print(f"token {arg}: not found or already revoked", file=sys.stderr)
                return 1
            print(
                f"token {arg}: revoked (running gateways drop it from their cache "
                "within 60 s, or at once on SIGHUP)"
            )
            return 0
        rows = await store.revenue_report(days)
        print(
            f"{'day':<10}  {'route':<28} {'settled':>8} {'revenue_sat':>12} {'paid_requests':>13}"
        )
        for r in rows:
            print(
                f"{r.day:<10}  {r.route:<28} {r.settled_invoices:>8} "
                f"{r.revenue_msat / 1000:>12.3f} {r.paid_requests:>13}"
            )
        if not rows:
            print("(no settled invoices or paid requests in the period)")
        return 0
    finally:
        await store.close()


def cmd_revoke(args: argparse.Namespace) -> int:
    return asyncio.run(_with_store(args.config, "revoke", args.token_id, None))


def cmd_report(args: argparse.Namespace) -> int:
    if args.reconcile:
        failed = _load(args.config)
        if failed is not None:
            return failed
        code = asyncio.run(_reconcile(args.config, sys.stderr if args.json else sys.stdout))
        if code:
            return code
    if args.json:
        return asyncio.run(_report_json(args.config, args.days))
    return asyncio.run(_with_store(args.config, "report", None, args.days))


async def _report_json(config_path: Path, days: int | None) -> int:
    from gateway.store import open_store

    config = load_config(config_path, check_files=False)
    store = await open_store(config.store.url, config.base_dir, timeout=CLI_STORE_TIMEOUT)
    try:
        rows = await store.revenue_report(days)
    finally:
        await store.close()
    print(json.dumps([r.__dict__ for r in rows], indent=2))
    return 0


async def _reconcile(config_path: Path, out: TextIO) -> int:
    """Book settled invoices of ours the ledger lacks (gateway.reconcile); 1 on failure."""
    from gateway.lightning import LndClient, LndError
    from gateway.reconcile import reconcile
    from gateway.store import StoreError, open_store

    config = load_config(config_path)
    store = await open_store(config.store.url, config.base_dir, timeout=CLI_STORE_TIMEOUT)
    lnd = LndClient.connect(
        config.lnd.host,
        tls_cert=config.lnd.tls_cert,
        macaroon=config.lnd.macaroon,
        timeout=config.lnd.timeout_seconds,
    )
    try:
        result = await reconcile(lnd, store)
    except LndError as exc:
        print(f"reconcile stopped: LND error {exc.code}: {exc}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"reconcile stopped: store error: {exc}", file=sys.stderr)
        return 1
    finally:
        await lnd.close()
        await store.close()
    print(
        f"reconcile: {result.scanned} invoices scanned, {result.settled} settled,"
        f" {result.ours} minted here; booked {result.booked} missing"
        f" ({result.booked_msat / 1000:.3f} sat)",
        file=out,
    )
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    failed = _load(args.config)
    if failed is not None:
        return failed
    if args.older_than_days is not None and args.older_than_days < 1:
        print("--older-than-days must be >= 1", file=sys.stderr)
        return 2
    return asyncio.run(_prune(args.config, args.older_than_days, args.dry_run))


async def _prune(config_path: Path, older_than_days: int | None, dry_run: bool) -> int:
    """Rounds until no candidates remain; exit 1 when LND or the store failed."""
    import time

    from gateway.lightning import LndClient
    from gateway.metrics import GatewayMetrics
    from gateway.pruning import DAY_SECONDS, DEFAULT_OLDER_THAN_DAYS, PruneResult, TokenPruner
    from gateway.store import StoreError, open_store

    config = load_config(config_path)
    days = older_than_days or config.store.prune_after_days or DEFAULT_OLDER_THAN_DAYS
    verb = "would delete" if dry_run else "deleted"
    store = await open_store(config.store.url, config.base_dir, timeout=CLI_STORE_TIMEOUT)
    lnd = LndClient.connect(
        config.lnd.host,
        tls_cert=config.lnd.tls_cert,
        macaroon=config.lnd.macaroon,
        timeout=config.lnd.timeout_seconds,
    )
    pruner = TokenPruner(lnd, store, GatewayMetrics(), days * DAY_SECONDS, dry_run=dry_run)
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
        print(f"store error: {exc}", file=sys.stderr)
        return 1
    finally:
        await lnd.close()
        await store.close()
    print(f"total: checked {total.checked}, {verb} {total.deleted}, kept {total.kept}")
    if total.error is not None:
        print(f"stopped: LND error {total.error}; the remaining rows were kept", file=sys.stderr)
        return 1
    return 0


def cmd_signal_upstream(args: argparse.Namespace) -> int:
    from gateway.demo_upstream import run_signal_upstream

    def started(port: int) -> None:
        print(f"signal upstream listening on http://{args.host}:{port}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_signal_upstream(args.host, args.port, started=started))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l402-gateway", description="Aperture-compatible L402 payment gateway"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", type=Path, default=DEFAULT_CONFIG)

    p = sub.add_parser("serve", help="run the gateway (public + admin listeners)")
    with_config(p)
    p.add_argument("--log-level", default="info")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes sharing the public port (default: this machine's cores); "
        "1 = one process serving both listeners",
    )
    p.add_argument("--log-file", type=Path, help="append JSON log lines here (created 0600)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate routes.yaml and exit")
    p.add_argument("config", type=Path)
    p.add_argument(
        "--skip-file-checks",
        action="store_true",
        help="do not require tls_cert/macaroon/CA files to exist (CI, review)",
    )
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("revoke", help="revoke a token by its id (hex)")
    with_config(p)
    p.add_argument("token_id")
    p.set_defaults(func=cmd_revoke)

    p = sub.add_parser("report", help="revenue and paid requests per route per day")
    with_config(p)
    p.add_argument("--days", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--reconcile",
        action="store_true",
        help="first book settled invoices the ledger lacks (asks LND; needs lnd config)",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("prune", help="delete tokens whose invoice expired unpaid")
    with_config(p)
    p.add_argument(
        "--older-than-days",
        type=int,
        default=None,
        help="grace period (default: store.prune_after_days, or 7 when that is 0)",
    )
    p.add_argument("--dry-run", action="store_true", help="check with LND but delete nothing")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("signal-upstream", help="serve the EP212 demo payload")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.set_defaults(func=cmd_signal_upstream)

    from gateway.aperture.commands import add_convert_parser, add_import_parser

    add_convert_parser(sub)  # convert-aperture: aperture.yaml -> routes.yaml
    add_import_parser(sub)  # import-aperture: Aperture's root keys -> our store
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
