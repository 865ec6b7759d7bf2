"""Optional parts of the install (pip extras) and the one line that says which one is missing.

The seller (`pip install l402-gateway`) installs only what serving needs. The
buyer's BOLT11 decoder (`bolt11`, which pins `bitstring<5`) and the MCP
server's SDK (`mcp`, which brings pydantic, starlette, httpx2, ...) are extras,
so an app that embeds the seller never inherits their pins. A command that
needs an extra imports it only when it runs, and a missing or incompatible
package becomes one line naming the `pip install` that fixes it, exit 2,
instead of a traceback.

`buyer_main` is the `l402-buyer` console entry point: it lives here, outside
`gateway.buyer`, because importing that package already needs the extra.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

EXIT_USAGE = 2  # as gateway.commands.loading (not imported: l402-buyer must start light)


@dataclass(frozen=True)
class Extra:
    """A pip extra of l402-gateway."""

    name: str

    @property
    def install(self) -> str:
        return f"pip install 'l402-gateway[{self.name}]'"


BUYER = Extra("buyer")  # l402-buyer
MCP = Extra("mcp")  # l402-gateway mcp


class ExtraMissing(Exception):
    """A module an extra provides could not be imported (absent or incompatible)."""

    code = EXIT_USAGE

    def __init__(self, extra: Extra, module: str, detail: str) -> None:
        super().__init__(
            f"the {extra.name!r} extra is not installed or is incomplete ({detail});"
            f" install it with: {extra.install}"
        )
        self.extra = extra
        self.module = module


def load(extra: Extra, module: str) -> object:
    """Import `module` (a gateway module that needs `extra`) or raise ExtraMissing.

    Only an import failure of a third-party module is blamed on the extra; a
    broken gateway module is a bug and keeps its traceback.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or ""
        if missing.split(".")[0] in ("", "gateway"):
            raise
        detail = (
            f"no module named {missing!r}"
            if isinstance(exc, ModuleNotFoundError)
            else f"{missing}: {exc.msg}"
        )
        raise ExtraMissing(extra, missing, detail) from None


def buyer_main(argv: Sequence[str] | None = None) -> int:
    """`l402-buyer`: the buyer's CLI once its extra is known to import. The invoice decoder
    is what needs the extra (bolt11 and its bitstring); the rest of the buyer's commands
    load when one runs (gateway.buyer.cli), so `--version` stays quick."""
    try:
        load(BUYER, "gateway.buyer.invoice")
        cli = load(BUYER, "gateway.buyer.cli")
    except ExtraMissing as exc:
        print(f"l402-buyer: {exc}", file=sys.stderr)
        return exc.code
    main: Callable[[Sequence[str] | None], int] = cli.main  # type: ignore[attr-defined]
    return main(argv)


__all__ = ["BUYER", "MCP", "Extra", "ExtraMissing", "buyer_main", "load"]
