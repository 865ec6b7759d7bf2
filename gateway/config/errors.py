"""Configuration errors that point at the exact file, line and field.

An operator fixing routes.yaml at 3 a.m. needs "routes.yaml:12: routes[1].price_sats:
must be >= 0", not a traceback, and wants every mistake listed in one go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigError:
    """One problem in a configuration file; `line` is 1-based (0 = the file itself)."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


class ConfigErrors(Exception):
    """Raised by the loader with every problem it found, in file order."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors: tuple[ConfigError, ...] = tuple(
            sorted(errors, key=lambda e: (e.file, e.line, e.field))
        )
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)
