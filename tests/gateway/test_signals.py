"""`l402-gateway serve` as operators run it: SIGHUP reloads routes.yaml, SIGTERM stops cleanly."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway.regtest.network import Descriptor
from gateway.regtest.processes import wait_until
from gateway.rehearsal.stack import ROUTE_A_PATH, WORKERS, SellerStack

pytestmark = pytest.mark.regtest


def _challenge_amount(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5):  # noqa: S310 (loopback)
            return None
    except urllib.error.HTTPError as exc:
        if exc.code != 402:
            return None
        return int(json.loads(exc.read())["price_msats"])


def test_sighup_reload_and_sigterm(regtest: Descriptor, tmp_path: Path) -> None:
    stack = SellerStack.start(regtest, tmp_path / "seller")
    gateway = next(p for p in stack.processes if p.name == "gateway")
    url = stack.public_url + ROUTE_A_PATH
    original = stack.config_path.read_text()
    try:
        assert _challenge_amount(url) == 10_000

        # A valid edit: the new price applies without a restart.
        stack.config_path.write_text(original.replace("price_sats: 10\n", "price_sats: 20\n"))
        gateway.popen.send_signal(signal.SIGHUP)
        wait_until("the reloaded price", lambda: _challenge_amount(url) == 20_000, 15)

        # A broken edit: refused with file:line, the running routes stay.
        stack.config_path.write_text(original.replace("price_sats: 10\n", "price_sats: -5\n"))
        gateway.popen.send_signal(signal.SIGHUP)
        wait_until(
            "the refused reload in the log",
            lambda: "config reload refused" in gateway.log_path.read_text(),
            15,
        )
        log = gateway.log_path.read_text()
        assert f"{stack.config_path}:" in log
        assert "price_sats" in log
        assert _challenge_amount(url) == 20_000
        metrics = stack.metrics()
        # The supervisor sends every reload to every worker; each checks the file, reloads a
        # valid one and refuses a broken one, keeping its running routes.
        assert metrics['l402_config_reloads_total{result="ok"}'] == WORKERS
        assert metrics['l402_config_reloads_total{result="error"}'] == WORKERS

        gateway.popen.send_signal(signal.SIGTERM)
        assert gateway.popen.wait(timeout=30) == 0
        assert "shutting down" in gateway.log_path.read_text()
    finally:
        stack.stop()
