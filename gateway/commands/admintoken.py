"""`admin-token FILE`: write a fresh admin API secret, readable by its owner only."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from gateway.commands.errors import CommandError

TOKEN_BYTES = 32


def cmd_admin_token(args: argparse.Namespace) -> int:
    path: Path = args.file
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise CommandError(
            f"{path}: exists; --force replaces it (the old secret stops working)"
        ) from None
    except OSError as exc:
        raise CommandError(f"{path}: cannot write: {exc.strerror}") from None
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # O_TRUNC keeps an existing file's mode
        out.write(secrets.token_hex(TOKEN_BYTES) + "\n")
    print(f"{path}: new admin API secret (mode 0600); set admin.token_file to it")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("admin-token", help="write a fresh admin API secret file (0600)")
    p.add_argument("file", type=Path)
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_admin_token)
