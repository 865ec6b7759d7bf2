"""A listener that cannot bind, in one line for a person (`serve`, a worker of `serve
--workers N`): which address, why, and what usually causes it."""

from __future__ import annotations

import errno
import re

_BIND_ADDRESS = re.compile(r"\('([^']*)', (\d+)")


def listen_failure(exc: OSError) -> str:
    """`cannot listen on 127.0.0.1:8080: address already in use`, from asyncio's bind error."""
    text = exc.strerror or str(exc)
    match = _BIND_ADDRESS.search(text)
    where = ""
    if match is not None:
        host = match.group(1)
        where = f" on {f'[{host}]' if ':' in host else host}:{match.group(2)}"
    reason = text.rsplit(": ", 1)[-1] if ": " in text else text
    hint = ""
    if exc.errno == errno.EADDRINUSE:
        hint = " (another gateway or service holds it: see listen.public / listen.admin)"
    elif exc.errno == errno.EACCES:
        hint = " (ports below 1024 need privileges)"
    return f"cannot listen{where}: {reason}{hint}; not starting"
