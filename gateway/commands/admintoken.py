"""`admin-token FILE`: write a fresh admin API secret, readable by its owner only."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from gateway.commands.errors import CommandError

TOKEN_BYTES = 32


def write_admin_token(path: Path, *, force: bool = False) -> None:
    """A fresh secret in `path`, mode 0600 (also `make run`'s). Raises FileExistsError, OSError."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # O_TRUNC keeps an existing file's mode
        out.write(secrets.token_hex(TOKEN_BYTES) + "\n")


def cmd_admin_token(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        write_admin_token(path, force=args.force)
    except FileExistsError:
        raise CommandError(
            f"{path}: exists; --force replaces it (the old secret stops working)"
        ) from None
    except OSError as exc:
        raise CommandError(f"{path}: cannot write: {exc.strerror}") from None
    print(f"{path}: new admin API secret (mode 0600); set admin.token_file to it")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("admin-token", help="write a fresh admin API secret file (0600)")
    p.add_argument("file", type=Path)
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_admin_token)
