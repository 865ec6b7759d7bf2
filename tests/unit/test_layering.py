"""Loading a route file is a pure step: the check-config command, the embed settings and the
Aperture converter load routes without pulling in the HTTP stack or the proxy (issue 9: config
no longer imports proxy). Run in a fresh interpreter so other tests' imports do not mask it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_loading_a_route_file_imports_neither_aiohttp_nor_the_proxy(tmp_path: Path) -> None:
    config = tmp_path / "routes.yaml"
    for name in ("tls.cert", "invoice.macaroon"):
        (tmp_path / name).write_bytes(b"x")
    config.write_text(
        "lnd: {host: '127.0.0.1:10009', tls_cert: tls.cert, macaroon: invoice.macaroon}\n"
        "routes:\n"
        "  - {name: a, path: '^/a$', upstream: 'http://127.0.0.1:9', price_sats: 10}\n"
    )
    code = (
        "import json, sys\n"
        "from gateway.config import load_config\n"
        f"table = load_config({str(config)!r})\n"
        "loaded = [m for m in sys.modules if m == 'aiohttp' or m.startswith('aiohttp.')\n"
        "          or m.startswith('gateway.proxy') or m.startswith('gateway.server')]\n"
        "print(json.dumps({'routes': [r.name for r in table.routes.routes], 'loaded': loaded}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["routes"] == ["a"]
    assert result["loaded"] == []


def _fresh(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    loaded: list[str] = json.loads(out.stdout)
    return loaded


ABOVE_THE_PAYWALL = ("gateway.proxy", "gateway.server", "gateway.embed", "gateway.h2engine")


def test_the_paywall_loads_no_framework_and_nothing_above_it() -> None:
    """Every module of gateway.paywall, imported in a fresh interpreter: no aiohttp, no grpc,
    nothing of the transports that call it (issue 16)."""
    loaded = _fresh(
        "import importlib, json, pkgutil, sys, gateway.paywall as p\n"
        "for m in pkgutil.walk_packages(p.__path__, 'gateway.paywall.'):\n"
        "    importlib.import_module(m.name)\n"
        f"print(json.dumps([m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'grpc')\n"
        f"                  or m.startswith({ABOVE_THE_PAYWALL!r})]))\n"
    )
    assert loaded == []


def test_the_embedding_does_not_load_the_proxy() -> None:
    loaded = _fresh(
        "import json, sys, gateway.embed\n"
        f"print(json.dumps([m for m in sys.modules if m.startswith({ABOVE_THE_PAYWALL[:2]!r})\n"
        "                  or m.startswith('gateway.h2engine')]))\n"
    )
    assert loaded == []


def _package_imports() -> dict[str, set[str]]:
    """gateway's packages (and top-level modules) -> the other ones their code imports."""
    edges: dict[str, set[str]] = {}
    for path in (REPO / "gateway").rglob("*.py"):
        if "rpc" in path.parts:
            continue
        own = path.relative_to(REPO / "gateway").parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                if parts[0] == "gateway" and len(parts) > 1 and parts[1] != own:
                    edges.setdefault(own, set()).add(parts[1])
    return edges


def test_no_import_circle_runs_between_packages() -> None:
    """A circle may run inside one package, never between two (issue 16)."""
    edges = _package_imports()
    circles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt == path[0]:
                circles.append(" -> ".join([*path, nxt]))
            elif nxt not in path and nxt > path[0]:  # each circle reported once
                visit(nxt, [*path, nxt])

    for start in sorted(edges):
        visit(start, [start])
    assert circles == []


def test_nothing_the_paywall_imports_is_above_it() -> None:
    edges = _package_imports()
    above = {"proxy", "server", "embed", "h2engine", "commands", "aioweb", "cli"}
    assert edges["paywall"] & above == set()
