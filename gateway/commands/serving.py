"""`serve`, `check-config` and `signal-upstream`: the commands that run or vet a gateway."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.commands.errors import EXIT_FAILED, CommandError
from gateway.server.listen_failure import listen_failure

if TYPE_CHECKING:  # what the commands load when they run, not the parser
    from gateway.config.model import GatewayConfig


def cmd_serve(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise CommandError("--workers must be >= 1")
    if args.workers > 1:
        return _supervise(args)  # logging is set up once the first worker is starting
    from gateway.commands.loading import load_strict
    from gateway.observability import logsetup as logs
    from gateway.store.types import StoreError

    load_strict(args.config)
    try:
        logs.configure(args.log_level, log_file=args.log_file)
    except logs.LogSetupError as exc:
        raise CommandError(f"{exc}; not starting") from None
    # Imported only here: the supervisor loads nothing of the request path, and
    # prometheus-client must not be loaded before it has set up multiprocess metrics.
    import asyncio

    from gateway.server.serve import serve

    try:
        asyncio.run(serve(args.config))
    except OSError as exc:
        raise CommandError(listen_failure(exc), EXIT_FAILED) from None
    except StoreError as exc:
        raise CommandError(f"store: {exc}; not starting", EXIT_FAILED) from None
    return 0


def _supervise(args: argparse.Namespace) -> int:
    """`serve --workers N`: the supervisor loads neither the file nor the request path;
    the first worker starts at once and checks the file, the ports and the store, and a
    refusal is one line here (with the exit code), as with one process."""
    from gateway.server.workers import StartRefused, supervise

    def prepare() -> None:
        from gateway.observability import logsetup as logs

        try:
            logs.configure(args.log_level, log_file=args.log_file)
        except logs.LogSetupError as exc:
            raise CommandError(f"{exc}; not starting") from None

    try:
        return supervise(args.config, args.workers, args.log_level, args.log_file, prepare)
    except StartRefused as exc:
        raise CommandError(str(exc), exc.code) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.commands.loading import load_strict

    path: Path = args.config_file or args.config  # FILE, else --config and its default
    config = load_strict(path, check_files=not args.skip_file_checks)
    print(f"{path}: OK, {len(config.routes)} route(s)")
    for route in config.routes.routes:
        price = "free" if route.is_free else f"{route.price_msat} msat"
        print(
            f"  {route.name}: {route.path.pattern} -> {route.upstream} ({price}, "
            f"{route.token_mode.value})"
        )
    api = "on" if config.admin.token_file is not None else "off (no admin.token_file)"
    print(f"  admin listener {config.listen.admin}, admin API {api}")
    if args.online:
        import asyncio

        return asyncio.run(_check_online(config))
    return 0


async def _check_online(config: GatewayConfig) -> int:
    """Ask the Lightning node what would go wrong at run time; exit 1 if anything would."""
    from gateway.lightning.lnd.diagnose import diagnose, refund_permission
    from gateway.lightning.lnd.node import LndClient

    section = config.lightning
    timeout = section.timeout_seconds
    findings = []
    async with LndClient.connect(
        section.host, tls_cert=section.tls_cert, macaroon=section.macaroon, timeout=timeout
    ) as client:
        findings += await diagnose(client, timeout)
    if section.refund_macaroon is not None and all(f.ok for f in findings):
        async with LndClient.connect(
            section.host, tls_cert=section.tls_cert, macaroon=section.refund_macaroon,
            timeout=timeout,
        ) as payer:  # fmt: skip
            findings.append(await refund_permission(payer, timeout))
    for finding in findings:
        print(f"  lightning {finding.check}: {'ok' if finding.ok else 'FAILED'}: {finding.detail}")
    return 0 if all(f.ok for f in findings) else EXIT_FAILED


def cmd_signal_upstream(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from gateway.demo.upstream import run_signal_upstream

    def started(port: int) -> None:
        print(f"signal upstream listening on http://{args.host}:{port}", flush=True)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_signal_upstream(args.host, args.port, started=started))
    except OSError as exc:
        raise CommandError(listen_failure(exc), EXIT_FAILED) from None
    return 0


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    p = sub.add_parser("serve", help="run the gateway (public + admin listeners)")
    with_config(p)
    p.add_argument("--log-level", default="info")
    p.add_argument("--log-file", type=Path, help="append JSON log lines here (created 0600)")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes sharing the public port (default: this machine's cores); "
        "1 = one process serving both listeners",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate routes.yaml and exit")
    p.add_argument(
        "config_file", nargs="?", type=Path, metavar="FILE", help="the file (default: --config)"
    )
    with_config(p)  # the same default as every other command: the installed routes.yaml
    p.add_argument(
        "--skip-file-checks",
        action="store_true",
        help="do not require tls_cert/macaroon/CA/admin token files to exist (CI, review)",
    )
    p.add_argument(
        "--online",
        action="store_true",
        help="also ask the Lightning node: reachable, TLS, wallet unlocked, may the "
        "macaroon mint invoices (and the refund macaroon pay), synced",
    )
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("signal-upstream", help="serve the EP212 demo payload (smoke tests)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.set_defaults(func=cmd_signal_upstream)
