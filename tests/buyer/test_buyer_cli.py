"""`l402-buyer fetch` as an operator meets it: default cache, flags, one-line errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

import gateway
from gateway.buyer import console
from gateway.buyer.cli import main

from .cliproc import CLI, DEADLINE, Run, base_env, executor_env, run_cli
from .fakes import Executor, RouteSpec, Seller


@pytest.fixture
def routes() -> dict[str, RouteSpec]:
    return {
        "/paid": RouteSpec(10_000, style="gateway"),
        "/other": RouteSpec(20_000, style="gateway"),
        "/hang": RouteSpec(10_000, hang=True),
    }


@pytest.fixture
def xdg(tmp_path: Path) -> Path:
    return tmp_path / "xdg"


@pytest.fixture
def env(xdg: Path, executor_server: tuple[Executor, TestServer]) -> dict[str, str]:
    executor, http = executor_server
    return base_env(
        XDG_CACHE_HOME=str(xdg), **executor_env(str(http.make_url("/")), executor.token)
    )


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but never listening: connecting is refused, and nobody else can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _fetch(url: str, *extra: str) -> list[str]:
    return ["fetch", url, "--max-msats", "50000", "--json", *extra]


async def test_version_comes_from_the_package() -> None:
    run = await run_cli(["--version"], base_env())
    assert (run.code, run.out) == (0, f"l402-buyer {gateway.__version__}\n")


async def test_second_identical_fetch_uses_the_default_cache(
    seller_server: tuple[Seller, TestServer],
    executor_server: tuple[Executor, TestServer],
    env: dict[str, str],
    xdg: Path,
) -> None:
    (seller, server), executor = seller_server, executor_server[0]
    url = str(server.make_url("/paid"))
    first, second = await run_cli(_fetch(url), env), await run_cli(_fetch(url), env)
    assert json.loads(first.out)["outcome"] == "paid", first.err
    assert (json.loads(second.out)["outcome"], json.loads(second.out)["cacheStatus"]) == (
        "ok",
        "hit",
    )
    assert (seller.challenges["/paid"], len(executor.received)) == (1, 1)
    path = xdg / "l402-buyer" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_home_cache_when_no_xdg(
    seller_server: tuple[Seller, TestServer], env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in env.items() if k != "XDG_CACHE_HOME"} | {"HOME": str(tmp_path)}
    url = str(seller_server[1].make_url("/paid"))
    assert (await run_cli(_fetch(url), env)).code == 0
    assert (tmp_path / ".cache" / "l402-buyer" / "credentials.json").is_file()


async def test_no_cache_pays_every_time_and_writes_nothing(
    seller_server: tuple[Seller, TestServer], env: dict[str, str], xdg: Path
) -> None:
    (seller, server) = seller_server
    url = str(server.make_url("/paid"))
    for _ in range(2):
        run = await run_cli(_fetch(url, "--no-cache"), env)
        assert json.loads(run.out)["outcome"] == "paid"
    assert seller.challenges["/paid"] == 2
    assert not await asyncio.to_thread(xdg.exists)


async def test_concurrent_buyers_share_the_default_cache(
    seller_server: tuple[Seller, TestServer],
    executor_server: tuple[Executor, TestServer],
    env: dict[str, str],
) -> None:
    (seller, server), executor = seller_server, executor_server[0]
    urls = [str(server.make_url(p)) for p in ("/paid", "/other")]
    firsts = await asyncio.gather(*(run_cli(_fetch(u), env) for u in urls))
    assert [json.loads(r.out)["outcome"] for r in firsts] == ["paid", "paid"]
    again = await asyncio.gather(*(run_cli(_fetch(u), env) for u in urls))
    assert [json.loads(r.out)["cacheStatus"] for r in again] == ["hit", "hit"]
    assert len(executor.received) == 2  # neither buyer's write dropped the other's credential
    assert (seller.challenges["/paid"], seller.challenges["/other"]) == (1, 1)


async def test_confirm_reads_the_answer_from_stdin_and_prompts_on_stderr(
    seller_server: tuple[Seller, TestServer], env: dict[str, str]
) -> None:
    url = str(seller_server[1].make_url("/paid"))
    run = await run_cli(_fetch(url, "--confirm", "--no-cache"), env, stdin=b"yes\n")
    assert json.loads(run.out)["outcome"] == "paid"  # stdout is only the report
    assert "Pay 10000 msat to 127.0.0.1 (cap 50000 msat)" in run.err


async def test_interrupt_exits_130_without_a_traceback(
    seller_server: tuple[Seller, TestServer], env: dict[str, str]
) -> None:
    seller, server = seller_server
    proc = await asyncio.create_subprocess_exec(
        *CLI, *_fetch(str(server.make_url("/hang"))), env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(DEADLINE):
        await seller.hanging.wait()  # the request is in flight
        proc.send_signal(signal.SIGINT)
        out, err = await proc.communicate()
    run = Run(proc.returncode or 0, out.decode(), err.decode())
    assert run.code == 130
    assert run.err.strip() == "l402-buyer: interrupted"


# In-process runs below: every one fails before any network I/O, or talks only to a
# refused port.


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("example.com/x", "URL must start with http:// or https://"),
        ("ftp://example.com/x", "URL must start with http:// or https://"),
        ("http:///x", "URL has no host"),
        ("http://127.0.0.1:99999/x", "URL is malformed (bad port or brackets)"),
        ("http://[::1/x", "URL is malformed (bad port or brackets)"),
        ("http://127.0.0.1/a b", "URL contains whitespace or control characters"),
    ],
)
def test_bad_url_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], url: str, message: str
) -> None:
    assert main(["fetch", url, "--max-msats", "1"], env={}) == 2
    assert _err_line(capsys) == f"l402-buyer fetch: error: {message}"


def test_bad_method_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch", "http://127.0.0.1/", "--max-msats", "1", "--method", "G T"], env={}) == 2
    assert "--method must be an HTTP method name" in _err_line(capsys)


@pytest.mark.parametrize("header", ["NoColon", ": value-without-name"])
def test_malformed_header_is_a_usage_error(capsys: pytest.CaptureFixture[str], header: str) -> None:
    args = ["fetch", "http://127.0.0.1:9/x", "--max-msats", "1", "--header", header]
    assert main(args, env={}) == 2
    assert _err_line(capsys) == "l402-buyer fetch: error: --header must be 'Name: value'"


def test_cache_and_no_cache_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fetch", "http://127.0.0.1/", "--max-msats", "1", "--cache", "f", "--no-cache"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_header_parsing() -> None:
    from gateway.buyer.commands import _parse_headers

    assert _parse_headers(["X-A: b:c", " Accept :text/plain "]) == {
        "X-A": "b:c",
        "Accept": "text/plain",
    }
    assert _parse_headers(["X-A b"]) is None


def test_missing_payer_settings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    assert main(["fetch", "http://127.0.0.1:9/x", "--max-msats", "1"], env=env) == 1
    line = _err_line(capsys)
    assert line.startswith("l402-buyer: fetch failed: missing_setting: no payer: set ")
    assert "OA_LIGHTNING_WALLET_EXECUTOR_BASE_URL" in line
    assert "L402_BUYER_LND_TLS_CERT" in line
    assert main(["fetch", "http://127.0.0.1:9/x", "--max-msats", "1", "--json"], env=env) == 1
    assert json.loads(capsys.readouterr().out)["code"] == "missing_setting"


def test_unreadable_lnd_files_are_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, closed_port: int
) -> None:
    cert = tmp_path / "tls.cert"
    cert.write_text("not really a certificate")
    env = {
        "XDG_CACHE_HOME": str(tmp_path),
        "L402_BUYER_LND_HOST": f"127.0.0.1:{closed_port}",
        "L402_BUYER_LND_TLS_CERT": str(cert),
        "L402_BUYER_LND_MACAROON": str(tmp_path / "missing.macaroon"),
    }
    assert main(["fetch", f"http://127.0.0.1:{closed_port}/x", "--max-msats", "1"], env=env) == 1
    assert _err_line(capsys) == (
        "l402-buyer: fetch failed: invalid_setting: L402_BUYER_LND_MACAROON: cannot read "
        f"{tmp_path / 'missing.macaroon'}: No such file or directory"
    )


def test_no_home_and_no_xdg_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    env = executor_env("http://127.0.0.1:9/", "t")
    assert main(["fetch", "http://127.0.0.1:9/x", "--max-msats", "1"], env=env) == 1
    line = _err_line(capsys)
    assert "no per-user cache directory: set XDG_CACHE_HOME or HOME" in line


@pytest.mark.parametrize("as_json", [False, True])
def test_unreachable_host(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, closed_port: int, as_json: bool
) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path), **executor_env("http://127.0.0.1:9/", "t")}
    args = ["fetch", f"http://127.0.0.1:{closed_port}/x", "--max-msats", "1"]
    assert main([*args, "--json"] if as_json else args, env=env) == 1
    message = f"transport_error: GET 127.0.0.1:{closed_port}: cannot connect: Connection refused"
    if as_json:
        report = json.loads(capsys.readouterr().out)
        assert report == {"ok": False, "code": "transport_error", "error": message}
    else:
        assert _err_line(capsys) == f"l402-buyer: fetch failed: {message}"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_insecure_default_cache_refused_before_any_request(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, closed_port: int, mode: int
) -> None:
    path = tmp_path / "l402-buyer" / "credentials.json"
    path.parent.mkdir(mode=0o700)
    path.write_text('{"version": 1, "entries": []}')
    path.chmod(mode)
    env = {"XDG_CACHE_HOME": str(tmp_path), **executor_env("http://127.0.0.1:9/", "t")}
    # The seller URL is a refused port: reaching it would be a transport_error instead.
    assert main(["fetch", f"http://127.0.0.1:{closed_port}/x", "--max-msats", "1"], env=env) == 1
    line = _err_line(capsys)
    assert f"insecure_permissions: {path} is accessible to others (mode {mode:o})" in line
    assert "chmod 600" in line
    assert "--no-cache" in line
    assert stat.S_IMODE(path.stat().st_mode) == mode  # reported, not silently changed


def test_loose_default_directory_is_tightened(tmp_path: Path, closed_port: int) -> None:
    directory = tmp_path / "l402-buyer"
    directory.mkdir()
    directory.chmod(0o755)
    env = {"XDG_CACHE_HOME": str(tmp_path), **executor_env("http://127.0.0.1:9/", "t")}
    main(["fetch", f"http://127.0.0.1:{closed_port}/x", "--max-msats", "1"], env=env)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


async def test_answer_wait_has_a_deadline() -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd) as reader, os.fdopen(write_fd, "w") as writer:
        assert await console.read_answer(reader, timeout=0.05) is None  # nobody answers
        writer.write("y\n")
        writer.flush()
        assert await console.read_answer(reader, timeout=5) == "y\n"
        writer.close()
        assert await console.read_answer(reader, timeout=5) == ""  # end of input: no


@pytest.mark.parametrize("prefer", ["bitcoin", "l402,l402", ""])
def test_bad_scheme_preference_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], prefer: str
) -> None:
    args = ["fetch", "http://127.0.0.1:9/x", "--max-msats", "1", "--prefer", prefer]
    assert main(args, env={}) == 2
    assert _err_line(capsys).startswith("l402-buyer fetch: error: --prefer: ")
