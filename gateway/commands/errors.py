"""How a command fails: one line for a person and an exit code (no traceback).

Kept apart from the commands so that the parser (gateway.cli) can name the
error without importing what the commands need (config, store, aiohttp):
`l402-gateway --version` and `--help` load nothing else.
"""

from __future__ import annotations

EXIT_FAILED = 1  # the command ran and failed (store, LND, not found)
EXIT_USAGE = 2  # bad arguments or configuration: nothing was done


class CommandError(Exception):
    """What went wrong, for a person: one line per problem, no traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code
