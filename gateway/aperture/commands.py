"""`l402-gateway convert-aperture` and `l402-gateway import-aperture`.

Exit status of convert-aperture: 0 when the output does everything the input
did (notes may still be printed: operator steps), 1 when something was dropped
or changed (each on its own `dropped:` line on stderr; the file is still
written), 2 when the input cannot be converted (nothing written).

Exit status of import-aperture: 0 when every row of Aperture's `secrets` is
in our store with Aperture's key and nothing needs a decision; 1 when a row
was bad (skipped, or the import stopped there with `--on-error stop`), a key
conflicted, tokens revoked in Aperture still verify here (no
`--sync-revocations`), or the store or the source failed mid-run (the keys
imported so far stay; re-running is harmless); 2 on bad arguments, or a
source or store that cannot be opened.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.aperture.options import SOURCE, SOURCE_NAME, ImportOptions, OnError
from gateway.aperture.shown import shown

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
    p.add_argument(
        "--on-error",
        choices=[m.value for m in OnError],
        default=OnError.SKIP.value,
        help="a bad row: skip it and go on (default), or stop the import there",
    )
    p.add_argument(
        "--sync-revocations",
        action="store_true",
        help="revoke here the imported tokens Aperture has revoked since (they are always listed)",
    )
    p.add_argument(
        "--source-name",
        type=_source_name,
        default=SOURCE,
        help="name the imported keys are kept under (one per Aperture database; default: "
        f"{SOURCE})",
    )
    p.set_defaults(func=cmd_import_aperture)


def _source_name(text: str) -> str:
    if not SOURCE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            "expected 1-64 characters: lower-case letters, digits, '-', '_', '.'"
        )
    return text


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

IMPORT_STORE_TIMEOUT = 30.0  # seconds per store call: a batch is one transaction


def cmd_import_aperture(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.config import ConfigErrors, load_config

    try:
        config = load_config(args.config, check_files=False)
    except ConfigErrors as exc:
        print(str(exc), file=sys.stderr)
        return 2
    options = ImportOptions(
        route_names=frozenset(config.routes.names),
        on_error=OnError(args.on_error),
        sync_revocations=args.sync_revocations,
        source_name=args.source_name,
    )
    return asyncio.run(_import(args.source, config, options, args.dry_run))


def _say(line: str) -> None:
    print(line, file=sys.stderr)


async def _import(source: str, config: GatewayConfig, options: ImportOptions, dry_run: bool) -> int:
    from gateway.aperture.importer import ImportFailed, run_import
    from gateway.aperture.keystore import ApertureDbError, open_source
    from gateway.store import StoreError, open_store

    try:
        aperture = await open_source(source)
    except ApertureDbError as exc:
        print(f"cannot read Aperture's database: {exc}", file=sys.stderr)
        return 2
    try:
        try:
            count = await aperture.count_secrets()
        except ApertureDbError as exc:
            print(f"cannot read Aperture's database: {exc}", file=sys.stderr)
            return 2
        with_tx = ", with l402_transactions" if "l402_transactions" in aperture.tables else ""
        print(f"reading {aperture.description}: {count} root key(s) in secrets{with_tx}")
        if dry_run:
            try:
                report = await run_import(aperture, None, options, _say)
            except ApertureDbError as exc:
                print(f"stopped: {exc}", file=sys.stderr)
                return 1
            _print_report(report, dry_run=True)
            return 0 if report.clean else 1
        try:
            store = await open_store(
                config.store.url, config.base_dir, timeout=IMPORT_STORE_TIMEOUT
            )
        except (StoreError, ValueError) as exc:
            print(f"cannot open this gateway's store: {exc}", file=sys.stderr)
            return 2
        try:
            report = await run_import(aperture, store, options, _say)
        except (ImportFailed, ApertureDbError) as exc:
            print(f"stopped: {exc}; re-run to continue (done so far below)", file=sys.stderr)
            if isinstance(exc, ImportFailed):
                _print_report(exc.report, dry_run=False)
            return 1
        finally:
            await store.close()
    finally:
        await aperture.close()
    _print_report(report, dry_run=False)
    return 0 if report.clean else 1


def _print_report(report: ImportReport, *, dry_run: bool) -> None:
    for service, count in sorted(report.unknown_services.items()):
        _say(
            f"warning: {count} token(s) sold for Aperture service {shown(service)}, which is "
            "not a route name in --config: they verify only on a route with exactly that name"
        )
    if report.stopped:
        _say(
            "stopped at the first bad row (--on-error stop): nothing from it on was imported; "
            "fix it, or re-run with --on-error skip"
        )
    states = ", ".join(f"{shown(state)} {n}" for state, n in sorted(report.by_state.items()))
    in_states = f" (states: {states})" if states else ""
    if dry_run:
        print(
            f"dry run: {report.rows} row(s) read, {report.bad_rows} bad row(s), "
            f"{report.warnings} warning(s), nothing imported{in_states}"
        )
        return
    revoked = f", already revoked here {report.already_revoked}" if report.already_revoked else ""
    print(
        f"imported {report.imported}, already present {report.already_present}, "
        f"conflicts {report.conflicts}, bad rows {report.bad_rows}{revoked}{in_states}"
    )
    if report.revoked_in_aperture:
        print(
            f"revoked in Aperture since imported: {report.revoked_in_aperture}, "
            f"revoked here now: {report.revoked_here_now}"
        )
