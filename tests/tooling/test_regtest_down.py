"""`make regtest-down` stops only the processes `regtest up` / `make run` started.

The daemons here are stand-ins (sleeping Python processes whose command lines
carry what a real btcd, lnd or gateway would): what is under test is which
recorded PIDs get a signal. A process holding a recorded PID that is not the
recorded one must survive, and the command says it skipped it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.regtest.network import Descriptor, NodeInfo
from gateway.regtest.owned import Outcome, Recorded, holds, start_ticks, stop_owned
from gateway.regtest.processes import ManagedProcess
from tests.ops.support import REPO

SLEEP = "import time; time.sleep(300)"


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; whatever survives the test is killed here."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def sleeper(spawned: list[subprocess.Popen[bytes]], *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", SLEEP, *args], start_new_session=True)
    spawned.append(proc)
    return proc


def node(name: str, base: Path, pid: int, ticks: int | None) -> NodeInfo:
    return NodeInfo(
        name, pid, "127.0.0.1:1", "127.0.0.1:2", str(base / name), "c", "a", "i", "r",
        start_ticks=ticks,
    )  # fmt: skip


def descriptor(
    tmp_path: Path, data: Path, btcd: tuple[int, int | None], seller: NodeInfo, buyer: NodeInfo
) -> Path:
    path = tmp_path / ".regtest" / "network.json"
    desc = Descriptor(str(data), btcd[0], "127.0.0.1:3", "c", "u", "p", seller, buyer)
    desc.btcd_start_ticks = btcd[1]
    desc.write(path)
    return path


def down(path: Path) -> list[str]:
    ran = subprocess.run(
        [sys.executable, "-m", "gateway.regtest", "down", "--descriptor", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.splitlines()


def test_processes_that_now_hold_recorded_pids_survive_and_are_named(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    data = tmp_path / "l402-regtest-abc"
    data.mkdir()
    # a later process on btcd's PID: same number, another start time
    other = sleeper(spawned)
    other_ticks = start_ticks(other.pid)
    assert other_ticks is not None
    # an old descriptor (no start times): the command line must name the node's directory
    stranger = sleeper(spawned, "--lnddir=/somewhere/else")
    seller = node("seller", data, stranger.pid, None)
    buyer = node("buyer", data, 0, None)  # never started: nothing to stop
    path = descriptor(tmp_path, data, (other.pid, other_ticks - 1), seller, buyer)

    lines = down(path)

    assert other.poll() is None
    assert stranger.poll() is None
    assert (
        f"skipped btcd (PID {other.pid}): the PID now belongs to another process"
        " (a different start time); not signalled"
    ) in lines
    assert (
        f"skipped lnd-seller (PID {stranger.pid}): the process holding the PID is not the one"
        f" recorded ('--lnddir={data / 'seller'}' is not in its command line); not signalled"
    ) in lines
    assert lines[-1] == "stopped 0 process(es), skipped 2"
    assert not path.exists()
    assert not data.exists()  # the data directory `up` made is still removed


def test_down_stops_the_daemons_it_recorded(tmp_path: Path) -> None:
    data = tmp_path / "l402-regtest-xyz"
    data.mkdir()
    argv = [sys.executable, "-c", SLEEP]
    btcd = ManagedProcess(
        "btcd", [*argv, f"--datadir={data / 'btcd' / 'data'}"], tmp_path / "b.log", detached=True
    )
    lnd = ManagedProcess(
        "lnd", [*argv, f"--lnddir={data / 'seller'}"], tmp_path / "l.log", detached=True
    )
    try:
        seller = node("seller", data, lnd.pid, lnd.start_ticks)
        path = descriptor(
            tmp_path, data, (btcd.pid, btcd.start_ticks), seller, node("buyer", data, 0, None)
        )
        lines = down(path)
        assert btcd.popen.wait(10) is not None
        assert lnd.popen.wait(10) is not None
    finally:
        btcd.stop()
        lnd.stop()
    assert f"stopped btcd (PID {btcd.pid})" in lines
    assert f"stopped lnd-seller (PID {lnd.pid})" in lines
    assert lines[-1] == "stopped 2 process(es), skipped 0"


def test_a_data_directory_up_did_not_make_is_kept(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    path = descriptor(
        tmp_path,
        precious,
        (0, None),
        node("seller", precious, 0, None),
        node("buyer", precious, 0, None),
    )
    down(path)
    assert (precious / "keep.txt").read_text() == "mine"
    assert not path.exists()


def test_make_run_services_are_stopped_only_when_they_are_still_ours(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    config = tmp_path / "seller" / "routes.yaml"
    ours = sleeper(spawned, "serve", "--config", str(config))
    impostor = sleeper(spawned, "signal-upstream", "--port", "18090")
    legacy_gateway = sleeper(spawned, "serve", "--config", "/elsewhere/routes.yaml")
    services = tmp_path / ".regtest" / "services.json"
    services.parent.mkdir()
    processes = {
        "gateway": {"pid": ours.pid, "start_ticks": start_ticks(ours.pid), "marker": str(config)},
        "signal-upstream": {
            "pid": impostor.pid,
            "start_ticks": start_ticks(impostor.pid),
            "marker": "--port 8090",
        },
    }
    services.write_text(
        json.dumps(
            {"upstream_url": "http://127.0.0.1:8090", "config": str(config), "processes": processes}
        )
    )
    lines = down(tmp_path / ".regtest" / "network.json")
    assert ours.wait(10) is not None
    assert impostor.poll() is None  # --port 18090 is not --port 8090
    assert f"stopped gateway (PID {ours.pid})" in lines
    assert f"skipped signal-upstream (PID {impostor.pid})" in lines[2]
    assert not services.exists()

    # a services.json from before start times were recorded: told by command line only
    services.write_text(
        json.dumps({"config": str(config), "upstream_url": "http://127.0.0.1:8090",
                    "pids": {"gateway": legacy_gateway.pid}})
    )  # fmt: skip
    lines = down(tmp_path / ".regtest" / "network.json")
    assert legacy_gateway.poll() is None
    assert lines[1].startswith(f"skipped gateway (PID {legacy_gateway.pid})")


def test_a_process_that_exited_is_reported_gone(spawned: list[subprocess.Popen[bytes]]) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = start_ticks(proc.pid)
    proc.wait(10)
    result = stop_owned(Recorded("btcd", proc.pid, ticks))
    assert result.outcome is Outcome.GONE
    assert result.line() == f"btcd (PID {proc.pid}) had already exited"


def test_a_record_without_marks_is_never_signalled(spawned: list[subprocess.Popen[bytes]]) -> None:
    proc = sleeper(spawned)
    result = stop_owned(Recorded("lnd-seller", proc.pid))
    assert result.outcome is Outcome.SKIPPED
    assert proc.poll() is None


def test_start_time_is_read_after_a_command_name_with_parentheses(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    fields = ["S", "1"] + [str(n) for n in range(5, 22)] + ["987654"] + ["0"] * 30
    (tmp_path / "42" / "stat").write_text(f"42 (a) b (c)) {' '.join(fields)}\n")
    assert start_ticks(42, proc=tmp_path) == 987654
    assert start_ticks(43, proc=tmp_path) is None


def test_markers_match_whole_arguments() -> None:
    argv = ["python", "-m", "gateway.cli", "signal-upstream", "--port", "18090"]
    assert holds(argv, "--port 18090")
    assert not holds(argv, "--port 1809")
    assert not holds(argv, "--port 8090")
    assert holds(["lnd", "--lnddir=/t/seller"], "--lnddir=/t/seller")
    assert not holds(["lnd", "--lnddir=/t/seller2"], "--lnddir=/t/seller")


def _ours(
    spawned: list[subprocess.Popen[bytes]], code: str
) -> tuple[subprocess.Popen[bytes], Recorded]:
    """A detached process (like a `regtest up` daemon) that says when its handler is set."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--marker"], start_new_session=True, stdout=subprocess.PIPE
    )
    spawned.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc, Recorded("lnd-seller", proc.pid, start_ticks(proc.pid), "--marker")


def test_stop_waits_for_a_slow_exit(spawned: list[subprocess.Popen[bytes]]) -> None:
    code = (
        "import signal, sys, time\n"
        "def bye(*_): time.sleep(1.5); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye); print('ready', flush=True); time.sleep(300)"
    )
    proc, record = _ours(spawned, code)
    result = stop_owned(record, timeout=20)
    assert result.outcome is Outcome.STOPPED
    assert proc.poll() == 0  # it had exited (its own way) when stop_owned returned


def test_a_process_ignoring_sigterm_is_killed_after_the_timeout(
    spawned: list[subprocess.Popen[bytes]],
) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(300)"
    )
    proc, record = _ours(spawned, code)
    result = stop_owned(record, timeout=0.5)
    assert result.outcome is Outcome.STOPPED
    assert proc.poll() == -9
