"""The seller imports no package of the buyer or mcp extras; a missing extra is one clear line.

Each check runs a fresh interpreter. With every extra installed (the
development venv), importing every seller module and running the CLI must
leave the extras' modules out of sys.modules. The missing-extra messages are
checked with an import blocker in front of every finder, which makes the
named packages look absent. tests/ops/test_locks.py installs the seller's
lock alone in a fresh venv and runs the installed commands there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from gateway.commands import extras
from tests.ops.support import REPO

# Top-level modules only the buyer extra brings (bolt11 and what it needs).
BUYER_ONLY = ("bolt11", "bitstring", "bitarray", "tibs", "coincurve", "base58")
# Top-level modules only the mcp extra brings (the SDK and what it needs).
MCP_ONLY = (
    "mcp", "mcp_types", "pydantic", "pydantic_core", "starlette", "sse_starlette", "httpx2",
    "httpcore2", "jsonschema", "jwt", "multipart",
)  # fmt: skip

BLOCKER = """
import importlib.abc, json, sys

BLOCKED = set(json.loads(sys.argv[1]))


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Blocker())
"""

SELLER = """
import contextlib, io, importlib, pathlib
import gateway

skip = ("gateway.__main__", "gateway.buyer", "gateway.regtest", "gateway.rehearsal",
        "gateway.commands.mcp_tools", "gateway.commands.mcp_sessions",
        "gateway.commands.mcp_balances")
root = pathlib.Path(gateway.__file__).parent
imported = []
# Every module file (gateway.server is a namespace package: pkgutil would not list it).
for path in sorted(root.rglob("*.py")):
    parts = path.relative_to(root.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    if name.startswith(skip):
        continue
    importlib.import_module(name)
    imported.append(name)

from gateway.cli import main

out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(["check-config", "config/routes.yaml", "--skip-file-checks"])
    try:
        main(["mcp", "--help"])
    except SystemExit:
        pass
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"loaded": loaded, "imported": imported, "code": code, "out": out.getvalue()}))
"""


def run(script: str, blocked: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(script), json.dumps(blocked)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_seller_never_imports_a_package_of_the_buyer_or_mcp_extras() -> None:
    """Every extra is installed here: an import of one would show in sys.modules."""
    ran = run(SELLER, ())
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout.splitlines()[-1])
    assert "aiohttp" in result["loaded"]  # the check sees third-party imports
    assert set(result["loaded"]) & set(BUYER_ONLY + MCP_ONLY) == set()
    # the walk reached the seller's parts, and the CLI worked without the extras
    for module in (
        "gateway.cli",
        "gateway.server.serve",
        "gateway.embed",
        "gateway.commands.mcp_command",
    ):
        assert module in result["imported"], module
    assert result["code"] == 0
    assert "config/routes.yaml: OK" in result["out"]
    assert "--allow-writes" in result["out"]  # `mcp --help` needs no SDK either


BUYER_MESSAGE = (
    "l402-buyer: the 'buyer' extra is not installed or is incomplete ({});"
    " install it with: pip install 'l402-gateway[buyer]'\n"
)


def test_the_buyer_names_its_extra_when_bolt11_is_missing() -> None:
    script = """
    from gateway.commands.extras import buyer_main
    sys.exit(buyer_main(["fetch", "http://127.0.0.1:9/x", "--max-msats", "1"]))
    """
    ran = run(script, ("bolt11",))
    assert (ran.returncode, ran.stdout) == (2, "")
    assert ran.stderr == BUYER_MESSAGE.format("no module named 'bolt11'")


def test_the_buyer_names_its_extra_when_bitstring_is_incompatible() -> None:
    """bitstring 5 (what an embedding app may have) lacks what bolt11 2.2.0 imports."""
    script = """
    import types
    sys.modules["bitstring"] = types.ModuleType("bitstring")  # no ConstBitStream
    from gateway.commands.extras import buyer_main
    sys.exit(buyer_main(["--version"]))
    """
    ran = run(script, ())
    assert ran.returncode == 2
    detail = "bitstring: cannot import name 'ConstBitStream' from 'bitstring' (unknown location)"
    assert ran.stderr == BUYER_MESSAGE.format(detail)


def test_the_buyer_runs_when_its_extra_is_there() -> None:
    ran = run(
        "from gateway.commands.extras import buyer_main\nsys.exit(buyer_main(['--version']))", ()
    )
    assert (ran.returncode, ran.stderr) == (0, "")
    assert ran.stdout.startswith("l402-buyer ")


def test_mcp_names_its_extra_when_the_sdk_is_missing() -> None:
    script = """
    from gateway.cli import main
    sys.exit(main(["mcp", "--config", "config/routes.yaml"]))
    """
    ran = run(script, ("mcp",))
    assert (ran.returncode, ran.stdout) == (2, "")
    assert ran.stderr == (
        "l402-gateway: mcp: the 'mcp' extra is not installed or is incomplete"
        " (no module named 'mcp'); install it with: pip install 'l402-gateway[mcp]'\n"
    )


def test_a_broken_gateway_module_is_not_blamed_on_an_extra() -> None:
    with pytest.raises(ModuleNotFoundError):
        extras.load(extras.BUYER, "gateway.no_such_module")
