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
