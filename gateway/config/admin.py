"""`admin:` section -> AdminConfig: who may call the admin API.

The admin API (gateway.server.admin_api) is off until `token_file` names a
file holding the bearer secret. The file must be readable by the service
user only: a secret that others on the host can read authenticates nobody.
"""

from __future__ import annotations

import stat
from pathlib import Path

import yaml

from gateway.config.model import AdminConfig
from gateway.config.nodes import Reader, Section

ADMIN_KEYS = frozenset({"token_file"})
MIN_TOKEN_CHARS = 32  # `openssl rand -hex 32` gives 64


class AdminTokenError(Exception):
    """The admin token file is missing, readable by others, or too short (never quotes it)."""


def read_admin_token(path: Path) -> bytes:
    """The secret in `path` (surrounding whitespace stripped).

    Refused when group or others have any permission on the file (0600 or
    0400 expected) or when it holds fewer than MIN_TOKEN_CHARS characters.
    """
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AdminTokenError(
                f"{path}: readable by group or others (mode {stat.S_IMODE(mode):04o}); chmod 600 it"
            )
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise AdminTokenError(f"{path}: cannot read: {exc.strerror}") from None
    if len(secret) < MIN_TOKEN_CHARS:
        raise AdminTokenError(
            f"{path}: holds {len(secret)} characters, at least {MIN_TOKEN_CHARS} needed"
            " (e.g. `openssl rand -hex 32`)"
        )
    return secret


def parse_admin(reader: Reader, node: yaml.Node | None) -> AdminConfig:
    s = Section.of(reader, node, "admin", ADMIN_KEYS)
    if s is None:
        return AdminConfig()
    text = s.opt_string("token_file")
    value_node = s.get("token_file")
    if not text or value_node is None:
        if value_node is not None and text == "":
            reader.error(value_node, "admin.token_file", "must not be empty")
        return AdminConfig()
    path = reader.file_path(value_node, "admin.token_file", text)
    if reader.check_files and path.is_file():
        try:
            read_admin_token(path)
        except AdminTokenError as exc:
            message = str(exc).removeprefix(f"{path}: ")
            reader.error(value_node, "admin.token_file", message)
    return AdminConfig(token_file=path)
