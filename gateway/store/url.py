"""Store URLs: which adapter, and where its data lives.

Kept free of database imports so the config loader can validate `store.url`
without loading sqlite3 or asyncpg.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

MEMORY = ":memory:"
SCHEMES = ("sqlite", "postgresql", "postgres")
# `word:` at the start of a plain path reads as a URL scheme (RFC 3986); a typo such as
# `sqlit:tokens.db` must not become a file `sqlit:tokens.db` in the config's directory.
_SCHEME_LIKE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True)
class StoreLocation:
    kind: Literal["sqlite", "postgres"]
    # Absolute SQLite path (or ":memory:"), or the PostgreSQL DSN, which may hold a password.
    target: str = field(repr=False)

    @property
    def url(self) -> str:
        if self.kind == "postgres":
            return self.target
        if self.target == MEMORY:
            return f"sqlite:{MEMORY}"
        return f"sqlite://{self.target}"


def parse_store_url(url: str, base_dir: Path | None = None) -> StoreLocation:
    """`sqlite:///abs`, `sqlite:rel`, a plain path, or `postgresql://...`.

    Relative SQLite paths resolve against `base_dir` (the config file's
    directory), not the process's working directory. Anything else that
    starts like a URL (`word:`) is refused, not taken for a file name.
    Raises ValueError.
    """
    url = url.strip()
    if not url:
        raise ValueError("empty store URL")
    if url.startswith(("postgresql://", "postgres://")):
        try:
            urlsplit(url).port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            # urllib's message quotes the text it took for a port, which can be part of the
            # password (an unescaped "/" in it): never echo it.
            raise ValueError(
                "PostgreSQL URL has an invalid port (percent-encode '/', '@' and ':' in the "
                "password)"
            ) from None
        return StoreLocation("postgres", url)
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:") :]
        if rest.startswith("//"):
            rest = rest[2:]
            if not rest.startswith("/"):
                raise ValueError("use sqlite:///absolute/path or sqlite:relative/path")
        path_text = rest
    elif (scheme := _SCHEME_LIKE.match(url)) is not None:
        raise ValueError(unknown_scheme(scheme.group(1)))
    else:
        path_text = url
    if not path_text:
        raise ValueError("SQLite URL has no path")
    if path_text == MEMORY:
        return StoreLocation("sqlite", MEMORY)
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return StoreLocation("sqlite", str(path))


def unknown_scheme(scheme: str) -> str:
    close = difflib.get_close_matches(scheme.lower(), SCHEMES, n=1, cutoff=0.6)
    hint = f"did you mean `{close[0]}:`? " if close else ""
    return (
        f"unsupported store URL scheme `{scheme}:`; {hint}use sqlite:PATH, sqlite:///ABSOLUTE/PATH,"
        " postgresql://... or a plain path (a file name holding ':' is sqlite:./NAME)"
    )
