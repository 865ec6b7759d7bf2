"""The regtest bring-up leaves nothing behind when it fails or is interrupted."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.regtest.network import RegtestNetwork, binary_dir, stop_from_descriptor
from gateway.regtest.processes import pid_alive, wait_until

REPO = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.append(int(entry.name))
    return kids


def _regtest_dir(pid: int) -> Path | None:
    """The l402-regtest-* directory a daemon was started in (from its command line)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return None
    for arg in argv:
        match = re.search(r"(/[^=]*/l402-regtest-[^/]+)", arg)
        if match:
            return Path(match.group(1))
    return None


def test_failed_bring_up_stops_everything_and_removes_its_data(tmp_path: Path) -> None:
    """A fake btcd that dies at once stands in for a daemon that cannot start."""
    real = binary_dir()
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("lnd", "lncli", "btcctl"):
        (fake_bin / tool).symlink_to(real / tool)
    (fake_bin / "btcd").write_text("#!/bin/sh\necho 'fake btcd: refusing to start' >&2\nexit 3\n")
    (fake_bin / "btcd").chmod(0o755)
    network = RegtestNetwork(bin_dir=fake_bin)
    with pytest.raises(RuntimeError, match="btcd exited early"):
        network.start()
    assert not network.dir.exists()
    assert network.procs == []


@pytest.mark.regtest
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_regtest_up_leaves_no_process(tmp_path: Path, signum: int) -> None:
    descriptor = tmp_path / "network.json"
    up = subprocess.Popen(
        [sys.executable, "-m", "gateway.regtest", "up", "--descriptor", str(descriptor)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # A shell's background job ignores SIGINT, and so would this child: undo that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # Interrupt once the daemons exist (btcd first, then the two lnd nodes).
        wait_until("daemons started by `regtest up`", lambda: len(_children(up.pid)) >= 2, 60)
        daemons = _children(up.pid)
        data_dirs = {d for pid in daemons if (d := _regtest_dir(pid)) is not None}
        up.send_signal(signum)
        output = up.communicate(timeout=60)[0].decode(errors="replace")
        assert up.returncode != 0, output[-3000:]
    finally:
        if up.poll() is None:
            up.kill()
        if descriptor.exists():  # `up` finished despite the signal: do not leak its network
            stop_from_descriptor(descriptor)
    wait_until("the interrupted daemons to exit", lambda: not any(map(pid_alive, daemons)), 30)
    assert not descriptor.exists()
    assert data_dirs, "could not tell the network's data directory from its daemons"
    assert not [d for d in data_dirs if d.exists()]
