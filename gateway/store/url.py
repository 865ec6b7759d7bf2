"""Store URLs: which adapter, and where its data lives.

Kept free of database imports so the config loader can validate `store.url`
without loading sqlite3 or asyncpg.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

MEMORY = ":memory:"


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
    directory), not the process's working directory. Raises ValueError.
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
    elif "://" in url:
        raise ValueError(f"unsupported store URL scheme {url.split('://', 1)[0]!r}")
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
