"""Loading routes.yaml for one command, and the one-line errors a person can cause.

Each command says what it needs: `serve` and `check-config` the whole file
with every `${VAR}` set; commands that do not proxy (revoke, report, tokens,
prune) load with unset variables deferred and refuse only those in the
sections they use, so a hand-run `revoke` does not need the upstream's API key.
"""

from __future__ import annotations

from pathlib import Path

from gateway.commands.errors import EXIT_FAILED, EXIT_USAGE, CommandError
from gateway.config import ConfigErrors, GatewayConfig, load_config

__all__ = [
    "EXIT_FAILED",
    "EXIT_USAGE",
    "CommandError",
    "load_for_operator",
    "load_strict",
    "store_unresolved",
]


def load_strict(path: Path, *, check_files: bool = True) -> GatewayConfig:
    """The whole file, as `serve` needs it (targets built, CA files loaded when checked)."""
    from gateway.server.targets import build_targets  # TLS contexts: only when checked

    try:
        config = load_config(path, check_files=check_files)
        if check_files:
            from gateway.server.targets import build_targets  # the HTTP stack: only when needed

            build_targets(config)
    except ConfigErrors as exc:
        raise CommandError(
            f"{exc}\n{path}: {len(exc.errors)} error(s); not starting", EXIT_USAGE
        ) from None
    return config


def load_for_operator(
    path: Path, *, needs: tuple[str, ...], check_files: bool = False
) -> GatewayConfig:
    """Load for a command that does not proxy; refuse unset `${VAR}`s only under `needs`.

    `needs` are top-level sections (`store`, `lnd`, ...) the command uses.
    """
    try:
        config = load_config(path, check_files=check_files, defer_env=True)
    except ConfigErrors as exc:
        raise CommandError(f"{exc}\n{path}: {len(exc.errors)} error(s)", EXIT_USAGE) from None
    blocking = [e for e in config.deferred if e.field.split(".")[0].split("[")[0] in needs]
    if blocking:
        lines = [
            f"{e} (this command reads it; run with the service's environment)" for e in blocking
        ]
        raise CommandError("\n".join(lines), EXIT_USAGE)
    return config


def store_unresolved(config: GatewayConfig) -> str | None:
    """The deferred problem with store.url, if any (its `${VAR}` was unset)."""
    for error in config.deferred:
        if error.field == "store.url":
            return str(error)
    return None
