"""`serve --log-file`: private files whatever the umask, rotation, clear start-up errors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import yaml

from gateway.observability import logsetup as logs
from gateway.observability.log_files import LogSetupError, SecureFileHandler, open_log_file
from tests.logs.support import (
    Secrets,
    exchange,
    leaks,
    status_of,
    unreachable_lnd,
    write_gateway_config,
)

REPO = Path(__file__).resolve().parents[2]
START_DEADLINE = 60.0


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process umask the test changes."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


@pytest.mark.parametrize("mask", [0o000, 0o002, 0o022, 0o077, 0o277])
def test_a_new_log_file_is_0600_whatever_the_umask(tmp_path: Path, umask: None, mask: int) -> None:
    os.umask(mask)
    path = tmp_path / "gateway.log"
    logs.configure("info", log_file=path, tick_seconds=None)
    logging.getLogger("gateway.test").info("hello")
    logs.unconfigure()
    assert mode_of(path) == 0o600
    assert json.loads(path.read_text())["msg"] == "hello"


def test_an_existing_private_file_is_appended_to_and_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "gateway.log"
    path.write_text('{"msg":"before"}\n')
    path.chmod(0o640)
    logs.configure("info", log_file=path, tick_seconds=None)
    logging.getLogger("gateway.test").info("after")
    logs.unconfigure()
    assert mode_of(path) == 0o640
    assert [json.loads(line)["msg"] for line in path.read_text().splitlines()] == [
        "before",
        "after",
    ]


@pytest.mark.parametrize(("before", "after"), [(0o644, 0o640), (0o666, 0o640), (0o604, 0o600)])
def test_an_existing_file_others_can_read_is_tightened(
    tmp_path: Path, before: int, after: int
) -> None:
    path = tmp_path / "gateway.log"
    path.touch()
    path.chmod(before)
    os.close(open_log_file(path))
    assert mode_of(path) == after


def test_a_rotated_file_is_recreated_0600_within_a_second(tmp_path: Path, umask: None) -> None:
    os.umask(0o000)
    path = tmp_path / "gateway.log"
    now = [0.0]
    handler = SecureFileHandler(path, check_every=1.0, clock=lambda: now[0])
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("gateway.rotation-test")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("first")
        path.rename(tmp_path / "gateway.log.1")  # what logrotate does (without copytruncate)
        now[0] = 0.5
        log.warning("late")  # within the check interval: still the rotated file
        now[0] = 1.0
        log.warning("second")
    finally:
        log.removeHandler(handler)
        log.propagate = True
        handler.close()
    assert mode_of(path) == 0o600
    assert [json.loads(line)["msg"] for line in path.read_text().splitlines()] == ["second"]
    rotated = (tmp_path / "gateway.log.1").read_text().splitlines()
    assert [json.loads(line)["msg"] for line in rotated] == ["first", "late"]


def test_unusable_log_files_and_levels_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(LogSetupError, match="cannot create log file"):
        logs.configure("info", log_file=tmp_path / "missing" / "gateway.log")
    with pytest.raises(LogSetupError, match="unknown log level 'loud'"):
        logs.configure("loud")
    assert logs._installed is None  # nothing half-installed


def test_a_failing_write_reports_its_type_once_never_the_record(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], secret: Secrets
) -> None:
    path = tmp_path / "gateway.log"
    handler = logs.configure("info", log_file=path, tick_seconds=None)
    assert isinstance(handler, logging.StreamHandler)
    handler.stream.close()  # every write now fails, as on a vanished disk
    for _ in range(3):
        logging.getLogger("gateway.test").error("credential %s", secret.credential)
    err = capfd.readouterr().err
    assert err.count("a log line could not be written (ValueError)") == 1
    assert not leaks(err, secret.named())


# -- the console script, as an operator runs it ----------------------------------------


def serve(
    config: Path, *args: str, mask: int = 0o000, stderr: IO[str] | int = subprocess.PIPE
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        umask=mask,
    )


def wait_for_line(path: Path, needle: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text():
            return
        if proc.poll() is not None:
            pytest.fail(f"serve exited early ({proc.returncode}): {path.read_text()[-2000:]}")
        time.sleep(0.05)  # polling a file another process writes, with a deadline
    pytest.fail(f"{needle!r} not logged within {START_DEADLINE}s")


def public_port(config: Path) -> int:
    document = yaml.safe_load(config.read_text())
    return int(document["listen"]["public"].rsplit(":", 1)[1])


def malformed(secret: Secrets) -> bytes:
    return (
        f"GET /p?k={secret.query} HTTP/1.1\r\nHost: gw\r\n"
        f"Authorization : {secret.credential}\r\n\r\n"
    ).encode()


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 0


@pytest.mark.parametrize("destination", ["--log-file", "stderr"])
def test_serve_writes_private_json_lines_without_secrets(
    tmp_path: Path, secret: Secrets, destination: str
) -> None:
    config = write_gateway_config(tmp_path, "http://127.0.0.1:9", lnd=unreachable_lnd(tmp_path))
    log_path = tmp_path / "logs" / "gateway.log"
    log_path.parent.mkdir()
    if destination == "--log-file":
        proc = serve(config, "--log-file", str(log_path), mask=0o000)
    else:
        with log_path.open("w") as err:  # the service manager's capture of stderr
            proc = serve(config, stderr=err)
    try:
        wait_for_line(log_path, "gateway listening", proc)
        if destination == "--log-file":
            assert mode_of(log_path) == 0o600
        response = asyncio.run(exchange(public_port(config), malformed(secret)))
        assert status_of(response) == 400
    finally:
        stop(proc)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    messages = {line["msg"] for line in lines}
    assert {"gateway listening", "shutting down; finishing in-flight requests"} <= messages
    assert any(  # the edge answers parser errors and logs their type only
        line.get("logger") == "gateway.edge" and line.get("error") == "BadHttpMessage"
        for line in lines
    )
    assert not leaks(log_path.read_text(), secret.named())


def test_serve_refuses_to_start_without_a_usable_log_file(tmp_path: Path) -> None:
    config = write_gateway_config(tmp_path, "http://127.0.0.1:9", lnd=unreachable_lnd(tmp_path))
    proc = serve(config, "--log-file", str(tmp_path / "no-such-dir" / "gateway.log"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "cannot create log file: No such file or directory; not starting" in err
    proc = serve(config, "--log-level", "loud")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "unknown log level 'loud'" in err
