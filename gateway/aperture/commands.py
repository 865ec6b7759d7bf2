"""`l402-gateway convert-aperture` and `l402-gateway import-aperture`.

Exit status of convert-aperture: 0 when the output does everything the input
did (notes may still be printed: operator steps), 1 when something was dropped
or changed (each on its own `dropped:` line on stderr; the file is still
written), 2 when the input cannot be converted (nothing written).

Exit status of import-aperture: 0 when every Aperture root key is now in our
store, 1 when some key conflicted, was skipped, or the store failed (the keys
imported so far stay; re-running is harmless), 2 on bad arguments or an
unreadable source.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import __version__

if TYPE_CHECKING:  # loaded by the commands that run, not by the parser
    from gateway.aperture.importer import ImportReport
    from gateway.config import GatewayConfig


def add_convert_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("convert-aperture", help="convert Aperture's aperture.yaml into routes.yaml")
    p.add_argument("aperture_config", type=Path, help="Aperture's aperture.yaml")
    p.add_argument("-o", "--output", type=Path, default=None, help="write here (default: stdout)")
    p.set_defaults(func=cmd_convert_aperture)


def add_import_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "import-aperture", help="import Aperture's root keys so its tokens keep working"
    )
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        help="Aperture's database: sqlite:PATH or postgresql://user@host:port/db (read only)",
    )
    p.add_argument("--config", "-c", type=Path, required=True, help="this gateway's routes.yaml")
    p.add_argument("--dry-run", action="store_true", help="read and check, import nothing")
    p.set_defaults(func=cmd_import_aperture)


# -- convert-aperture ------------------------------------------------------------------


def cmd_convert_aperture(args: argparse.Namespace) -> int:
    import yaml

    from gateway.aperture.convert import convert
    from gateway.aperture.emit import render
    from gateway.aperture.source import ApertureConfigError

    source: Path = args.aperture_config
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
        conversion = convert(data)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{source}: cannot read: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 2
    except yaml.YAMLError as exc:
        print(f"{source}: not YAML: {exc}", file=sys.stderr)
        return 2
    except ApertureConfigError as exc:
        print(f"{source}: {exc}", file=sys.stderr)
        return 2
    for note in conversion.notes:
        print(str(note), file=sys.stderr)
    text = render(conversion.document, source=source.name, version=__version__)
    problem = _self_check(text)
    if problem is not None:
        print(f"internal error: the converted file does not load:\n{problem}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"{args.output}: cannot write: {exc.strerror}", file=sys.stderr)
            return 2
        print(f"wrote {args.output} ({len(conversion.document.routes)} route(s))", file=sys.stderr)
    if not conversion.complete:
        dropped = sum(1 for n in conversion.notes if n.severity == "dropped")
        print(f"{dropped} setting(s) dropped or changed: review the lines above", file=sys.stderr)
        return 1
    return 0


def _self_check(text: str) -> str | None:
    """Load the result with our own loader, as `check-config --skip-file-checks` does.

    No file is checked for existence, so where the copy lives does not matter;
    our output needs no `${VAR}` from the operator's environment.
    """
    from gateway.config import ConfigErrors, load_config

    with tempfile.TemporaryDirectory(prefix="l402-convert-aperture-") as directory:
        copy = Path(directory) / "routes.yaml"
        copy.write_text(text, encoding="utf-8")
        try:
            load_config(copy, check_files=False, environ={})
        except ConfigErrors as exc:
            return str(exc)
    return None


# -- import-aperture -------------------------------------------------------------------


def cmd_import_aperture(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.config import ConfigErrors, load_config

    try:
        config = load_config(args.config, check_files=False)
    except ConfigErrors as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return asyncio.run(_import(args.source, config, args.dry_run))


async def _import(source: str, config: GatewayConfig, dry_run: bool) -> int:
    from gateway.aperture.importer import (
        ImportFailed,
        check_snapshot,
        import_snapshot,
    )
    from gateway.aperture.keystore import ApertureDbError, read_source
    from gateway.store import StoreError, open_store

    try:
        snapshot = await read_source(source)
    except ApertureDbError as exc:
        print(f"cannot read Aperture's database: {exc}", file=sys.stderr)
        return 2
    with_tx = sum(1 for r in snapshot.secrets if r.token_id is not None)
    print(
        f"read {len(snapshot.secrets)} root key(s) from {snapshot.description}"
        + (f", {with_tx} with a transaction record" if snapshot.has_transactions else "")
    )
    route_names = set(config.routes.names)
    for service in snapshot.services:
        marker = "" if service.name in route_names else " (no route of that name here)"
        print(
            f"note: Aperture's database defines service {service.name!r} (admin API; it "
            f"overrides aperture.yaml): path {service.path_regexp!r}, price {service.price}"
            f"{marker}; convert-aperture did not see it",
            file=sys.stderr,
        )
    if dry_run:
        report, _ = check_snapshot(snapshot, route_names)
        _print_report(report, dry_run=True)
        return 0 if report.clean else 1
    try:
        store = await open_store(config.store.url, config.base_dir)
    except (StoreError, ValueError) as exc:
        print(f"cannot open this gateway's store: {exc}", file=sys.stderr)
        return 2
    try:
        try:
            report = await import_snapshot(snapshot, store, route_names)
        except ImportFailed as exc:
            print(f"stopped: {exc}; re-run to continue (done so far below)", file=sys.stderr)
            _print_report(exc.report, dry_run=False)
            return 1
    finally:
        await store.close()
    _print_report(report, dry_run=False)
    return 0 if report.clean else 1


def _print_report(report: ImportReport, dry_run: bool) -> None:
    for line in report.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    for key_id in report.conflicts:
        print(
            f"conflict: key id {key_id}: this store holds a different root key (kept ours)",
            file=sys.stderr,
        )
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for service, count in sorted(report.unknown_services.items()):
        print(
            f"warning: {count} token(s) sold for Aperture service {service!r}, which is not a "
            "route name in --config: they verify only on a route with exactly that name",
            file=sys.stderr,
        )
    states = ", ".join(f"{state} {n}" for state, n in sorted(report.by_state.items()))
    if dry_run:
        print(f"dry run: {report.read} read, nothing imported (states: {states or '-'})")
        return
    print(
        f"imported {report.imported}, already present {report.already_present}, "
        f"conflicts {len(report.conflicts)}, skipped {len(report.skipped)}"
        + (f" (states: {states})" if states else "")
    )
