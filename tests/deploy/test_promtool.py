"""`promtool` validates the shipped Prometheus config and alert rules, and runs
the alert unit tests in deploy/prometheus/alerts_test.yml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.prometheus import require_binary

pytestmark = pytest.mark.prometheus

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of deploy/prometheus: relative rule paths resolve, nothing is written in-tree."""
    dest = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, dest)
    return dest


def promtool(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool")
    return subprocess.run(
        [binary, *args], cwd=workdir, capture_output=True, text=True, timeout=120, check=False
    )


def test_check_config(workdir: Path) -> None:
    result = promtool(workdir, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_check_rules(workdir: Path) -> None:
    result = promtool(workdir, "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout + result.stderr


def test_alert_unit_tests(workdir: Path) -> None:
    result = promtool(workdir, "test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_unit_tests_catch_a_broken_rule(workdir: Path) -> None:
    """The unit tests can fail: a wrong threshold must be caught."""
    alerts = workdir / "alerts.yml"
    text = alerts.read_text()
    assert "l402_lnd_up == 0" in text
    alerts.write_text(text.replace("l402_lnd_up == 0", "l402_lnd_up == 2"))
    result = promtool(workdir, "test", "rules", "alerts_test.yml")
    assert result.returncode != 0
    assert "L402LndUnreachable" in result.stdout + result.stderr
