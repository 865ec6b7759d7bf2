"""The hashed locks in constraints/: complete, consistent, current with pyproject.toml, usable.

`make lock` (scripts/lock.sh) writes them with pip-compile; these tests read
them as pip would. The last one installs the seller's lock with
`--require-hashes` into a fresh venv (from the package index, through pip's
cache) and runs the installed commands there: the seller works with neither
extra, and the buyer and `mcp` name the extra they need.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ops.support import REPO
from tests.ops.test_packaging import build_wheel, copy_sources

LOCKS = REPO / "constraints"
PROFILES = {  # lock file -> the extras it installs beyond the seller's dependencies
    "runtime.txt": (),
    "buyer.txt": ("buyer",),
    "mcp.txt": ("mcp",),
    "dev.txt": ("dev", "buyer", "mcp"),
}
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: frozenset[str]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, Pin]:
    """name -> version and hashes, from pip-compile's `name==v \\ --hash=...` entries."""
    pins: dict[str, Pin] = {}
    entries = re.split(r"\n(?=[A-Za-z0-9])", path.read_text())
    for entry in entries:
        match = _REQUIREMENT.match(entry)
        if match is None:
            continue
        name = norm(match.group(1))
        assert name not in pins, f"{path.name}: {name} twice"
        pins[name] = Pin(match.group(2), frozenset(_HASH.findall(entry)))
    return pins


def pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pinned(requirements: list[str]) -> dict[str, str]:
    out = {}
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement.replace(" ", ""))
        assert match is not None, f"pyproject.toml: {requirement!r} is not pinned with =="
        out[norm(match.group(1))] = match.group(2)
    return out


def test_every_entry_is_pinned_and_hashed_and_nothing_machine_specific() -> None:
    for name in (*PROFILES, "build.txt", "lock-tools.txt"):
        path = LOCKS / name
        text = path.read_text()
        pins = read_lock(path)
        assert pins, name
        for package, pin in pins.items():
            assert pin.hashes, f"{name}: {package} has no hash"
        requirement_lines = [
            line for line in text.splitlines() if line and not line.startswith((" ", "#"))
        ]
        assert len(requirement_lines) == len(pins), f"{name}: a requirement is not `name==v`"
        for option in ("--find-links", "--index-url", "--extra-index-url", "--trusted-host"):
            assert option not in text, f"{name}: {option}"
        assert not re.search(r"(^|\s)(/|~)[A-Za-z]", text), f"{name}: an absolute path"


def test_a_package_has_the_same_version_and_hashes_in_every_lock() -> None:
    seen: dict[str, tuple[str, Pin]] = {}
    for name in (*PROFILES, "build.txt"):
        for package, pin in read_lock(LOCKS / name).items():
            if package in seen:
                assert seen[package][1] == pin, f"{package}: {seen[package][0]} and {name} differ"
            else:
                seen[package] = (name, pin)


def test_the_locks_hold_exactly_pyprojects_pins() -> None:
    """A pin changed or added in pyproject.toml without `make lock` fails here."""
    project = pyproject()["project"]
    assert isinstance(project, dict)
    base = pinned(project["dependencies"])
    extras = {name: pinned(reqs) for name, reqs in project["optional-dependencies"].items()}
    for lock, profile in PROFILES.items():
        pins = read_lock(LOCKS / lock)
        wanted = dict(base)
        for extra in profile:
            wanted.update(extras[extra])
        for package, version in wanted.items():
            assert package in pins, f"{lock} lacks {package}: run `make lock`"
            assert pins[package].version == version, f"{lock}: {package}: run `make lock`"
    build_system = pyproject()["build-system"]
    assert isinstance(build_system, dict)
    backend = pinned(build_system["requires"])
    for lock in ("build.txt", "dev.txt"):
        pins = read_lock(LOCKS / lock)
        assert {p: pins[p].version for p in backend} == backend, lock


def test_the_sellers_lock_carries_no_extra() -> None:
    runtime = read_lock(LOCKS / "runtime.txt")
    for package in ("bolt11", "bitstring", "coincurve", "mcp", "pydantic", "pytest"):
        assert package not in runtime, package
    assert read_lock(LOCKS / "buyer.txt")["bitstring"].version.startswith("4.")


def _pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_CONSTRAINT", "PYTHON"))}
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip


UNREACHABLE = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
)


def test_a_fresh_venv_installs_the_sellers_lock_with_require_hashes(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = _pip(
        venv, "install", "--quiet", "--require-hashes", "-r", str(LOCKS / "runtime.txt")
    )
    if installed.returncode != 0 and any(s in installed.stderr for s in UNREACHABLE):
        pytest.skip("the package index is unreachable (pip: connection failed)")
    assert installed.returncode == 0, installed.stderr
    out = tmp_path / "wheel"
    built = build_wheel(copy_sources(tmp_path / "src"), out)
    assert built.returncode == 0, built.stderr
    (wheel,) = out.glob("l402_gateway-*.whl")
    project = _pip(venv, "install", "--quiet", "--no-deps", "--no-index", str(wheel))
    assert project.returncode == 0, project.stderr
    assert _pip(venv, "check").returncode == 0

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / argv[0]), *argv[1:]],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    assert run("l402-gateway", "--version").stdout.startswith("l402-gateway ")
    checked = run("l402-gateway", "check-config", str(REPO / "config" / "routes.yaml"),
                  "--skip-file-checks")  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert run("python", "-c", "import gateway.embed, gateway.server.serve").returncode == 0
    assert run("python", "-c", "import bolt11").returncode == 1
    buyer = run("l402-buyer", "--version")
    assert buyer.returncode == 2
    assert "install it with: pip install 'l402-gateway[buyer]'" in buyer.stderr
    mcp = run("l402-gateway", "mcp", "--config", str(REPO / "config" / "routes.yaml"))
    assert mcp.returncode == 2
    assert "install it with: pip install 'l402-gateway[mcp]'" in mcp.stderr
