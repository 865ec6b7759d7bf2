"""`promtool` validates the shipped Prometheus config and alert rules, and runs
the alert unit tests in deploy/prometheus/alerts_test.yml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


def shipped_rules() -> int:
    """How many alert rules deploy/prometheus/alerts.yml holds (promtool must find each)."""
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return sum(len(group["rules"]) for group in groups)


def test_check_rules(workdir: Path) -> None:
    result = promtool(workdir, "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert shipped_rules() >= 8
    assert f"SUCCESS: {shipped_rules()} rules found" in result.stdout + result.stderr


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


RUNBOOK_URL = "https://docs.example.org/l402-gateway/v0.2.0/runbook.md"


def render(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROMETHEUS_DIR / "render.py"), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_rendered_rules_link_absolute_runbook_urls_and_still_pass(tmp_path: Path) -> None:
    """`make prometheus RUNBOOK_URL=...`: absolute links, the chosen target, promtool green."""
    out = tmp_path / "rendered"
    result = render(out, "--runbook-url", RUNBOOK_URL, "--admin-target", "10.0.0.5:8402")
    assert result.returncode == 0, result.stderr
    rules = [
        rule
        for group in yaml.safe_load((out / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    ]
    assert len(rules) == shipped_rules()
    for rule in rules:
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_URL}#{rule['alert'].lower()}"
    scrape = yaml.safe_load((out / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["10.0.0.5:8402"]
    checked = promtool(out, "check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool(out, "test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # the shipped files themselves are untouched (relative links, default target)
    assert '"docs/runbook.md#l402gatewaydown"' in (PROMETHEUS_DIR / "alerts.yml").read_text()


@pytest.mark.parametrize(
    "url", ["docs/runbook.md", "ftp://example.org/runbook.md", f"{RUNBOOK_URL}#top"]
)
def test_render_refuses_a_url_that_is_not_absolute_http(tmp_path: Path, url: str) -> None:
    result = render(tmp_path / "out", "--runbook-url", url)
    assert result.returncode == 2
    assert "RUNBOOK_URL must" in result.stderr
    assert not (tmp_path / "out").exists()
