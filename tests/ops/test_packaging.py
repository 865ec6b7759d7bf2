"""The wheel an operator installs: built from this checkout's sources, used from outside it.

The wheel is installed with `pip install --target` into a temporary directory
and run from another directory with only that directory and the already
installed dependencies on the path (`-S`: no site hooks, so the development
install's editable finder cannot map `gateway` back to the checkout).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gateway import __version__

REPO = Path(__file__).resolve().parents[2]


def _site_packages() -> str:
    """Where this interpreter's dependencies live (never the checkout)."""
    import aiohttp

    return str(Path(aiohttp.__file__).resolve().parents[1])


SOURCES = ("pyproject.toml", "README.md", "LICENSE", "constraints", "gateway")


def copy_sources(dest: Path, names: tuple[str, ...] | list[str] = SOURCES) -> Path:
    """A clean copy to build from: a build in the checkout would leave build/ there,
    and setuptools packs whatever an older build left in build/lib."""
    dest.mkdir()
    for name in names:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def build_wheel(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--disable-pip-version-check", "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = copy_sources(tmp_path_factory.mktemp("src") / "l402-gateway")
    built = build_wheel(source, out)
    assert built.returncode == 0, built.stderr
    (wheel_file,) = out.glob("l402_gateway-*.whl")
    return wheel_file


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("installed")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
         "--disable-pip-version-check", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return target


def run_installed(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(target), _site_packages()])
    return subprocess.run(
        [sys.executable, "-S", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.name == f"l402_gateway-{__version__}-py3-none-any.whl"
    assert "gateway/py.typed" in names
    assert "gateway/__main__.py" in names
    assert "gateway/demo/upstream.py" in names  # ships: smoke-test upstream (README)
    assert not [n for n in names if n.startswith(("gateway/regtest/", "gateway/rehearsal/"))]
    assert not [n for n in names if n.startswith("tests/")]
    dist_info = f"l402_gateway-{__version__}.dist-info"
    assert any(n.startswith(f"{dist_info}/licenses/LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert f"Version: {__version__}" in metadata
    assert "License-Expression: MIT" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    runtime = [line for line in requires if "extra ==" not in line]
    for test_only in ("pymacaroons", "coincurve", "bech32", "pytest"):
        assert not [line for line in runtime if test_only in line], test_only
    # the buyer's decoder and the MCP SDK are extras: the seller's install never pulls them
    for extra_only in ("bolt11", "bitstring", "mcp"):
        assert not [line for line in runtime if line.split()[1] == extra_only], extra_only
    assert 'Requires-Dist: bolt11==2.2.0; extra == "buyer"' in requires
    assert 'Requires-Dist: mcp==2.3.0; extra == "mcp"' in requires
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "l402-gateway = gateway.cli:main" in entry_points
    assert "l402-buyer = gateway.commands.extras:buyer_main" in entry_points


def test_installed_wheel_runs_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = run_installed(installed, tmp_path, "-c", "import gateway; print(gateway.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip() == str(installed / "gateway" / "__init__.py")

    version = run_installed(installed, tmp_path, "-m", "gateway", "--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"l402-gateway {__version__}")

    (tmp_path / "routes.yaml").write_text(
        "lnd: {tls_cert: tls.cert, macaroon: invoice.macaroon}\n"
        f"store: {{url: 'sqlite://{tmp_path / 'tokens.db'}'}}\n"
        "routes:\n  - {name: p, path: '^/p$', upstream: 'http://127.0.0.1:9/', price_sats: 1}\n"
    )
    checked = run_installed(
        installed, tmp_path, "-m", "gateway", "check-config", "routes.yaml", "--skip-file-checks"
    )
    assert checked.returncode == 0, checked.stderr
    assert "routes.yaml: OK, 1 route(s)" in checked.stdout
    listed = run_installed(
        installed, tmp_path, "-m", "gateway", "tokens", "list", "-c", "routes.yaml"
    )
    assert listed.returncode == 0, listed.stderr
    assert "(no tokens)" in listed.stdout
    buyer = run_installed(installed, tmp_path, "-m", "gateway.buyer", "--version")
    assert buyer.returncode == 0, buyer.stderr

    # development tooling is not there (it runs from a checkout)
    regtest = run_installed(installed, tmp_path, "-c", "import gateway.regtest")
    assert regtest.returncode != 0
    assert "No module named 'gateway.regtest'" in regtest.stderr


def test_console_scripts_are_installed(installed: Path, tmp_path: Path) -> None:
    script = installed / "bin" / "l402-gateway"
    assert script.is_file()
    ran = run_installed(installed, tmp_path, str(script), "--help")
    assert ran.returncode == 0, ran.stderr
    commands = (
        "serve",
        "check-config",
        "tokens",
        "revoke",
        "report",
        "prune",
        "admin-token",
        "mcp",
    )
    for command in commands:
        assert command in ran.stdout


def test_the_docker_build_context_is_enough(tmp_path: Path) -> None:
    """deploy/docker builds the wheel from only what its .dockerignore lets in."""
    ignore = (REPO / "deploy" / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    assert {"pyproject.toml", "LICENSE", "gateway", "constraints/runtime.txt"} <= set(allowed)
    context = copy_sources(tmp_path / "context", allowed)
    out = tmp_path / "wheels"
    built = build_wheel(context, out)
    assert built.returncode == 0, built.stderr
    assert [p.name for p in out.glob("*.whl")] == [f"l402_gateway-{__version__}-py3-none-any.whl"]
