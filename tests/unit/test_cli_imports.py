"""`serve --workers N` sets up prometheus-client's multiprocess mode before the library is
first imported (its value class is chosen at import): the CLI must not import it earlier."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_building_the_cli_and_loading_config_do_not_import_prometheus_client() -> None:
    code = (
        "import sys, gateway.cli as c; c.build_parser(); "
        "import gateway.commands.loading, gateway.paywall.routes, gateway.server.workers; "
        "print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}; import sys; print(' '.join(sys.modules))"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_the_parser_loads_no_config_store_server_or_network_code() -> None:
    """`--version` and `--help` answer at once: the commands load what they need when run."""
    loaded = _modules_after("import gateway.cli as c; c.build_parser()")
    heavy = {"asyncio", "aiohttp", "yaml", "gateway.config", "grpc", "h2", "prometheus_client"}
    assert not heavy & loaded


def test_checking_a_config_loads_neither_aiohttp_nor_asyncio_nor_the_http2_engine() -> None:
    config = REPO / "config" / "routes.yaml"
    loaded = _modules_after(
        "import gateway.cli as c, gateway.commands.loading as l, pathlib; "
        f"l.load_strict(pathlib.Path({str(config)!r}), check_files=False); "
        "from gateway.server.targets import build_targets; "
        f"build_targets(l.load_strict(pathlib.Path({str(config)!r}), check_files=False))"
    )
    assert not {"asyncio", "aiohttp", "h2", "gateway.h2engine", "grpc"} & loaded
    assert "gateway.proxy.target" in loaded  # the targets were built


def test_the_buyers_parser_loads_neither_aiohttp_nor_its_client() -> None:
    loaded = _modules_after("import gateway.buyer.cli as c; c._parser()")
    assert not {"asyncio", "aiohttp", "gateway.buyer.client", "grpc", "bolt11"} & loaded
