"""`l402-buyer fetch` output, run as a real subprocess against a real local seller.

The seller answers 402 in this gateway's own wire format (`gateway.l402.challenge`:
LSAT + L402 headers and a JSON body carrying the macaroon and invoice). Every
refusal and error path is run in text and `--json` mode, and stdout + stderr
are searched for every macaroon the seller minted (base64, URL-safe, hex) and
every preimage (hex).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from gateway.buyer.report import scrub

from .cliproc import CLI, DEADLINE, Run, base_env, executor_env, leaks, run_cli, secret_forms
from .fakes import Executor, RouteSpec, Seller, mint_macaroon


@pytest.fixture
def routes() -> dict[str, RouteSpec]:
    g = "gateway"
    return {
        "/paid": RouteSpec(10_000, style=g),
        "/expensive": RouteSpec(250_000, style=g),
        "/refuses-paid": RouteSpec(10_000, style=g, mode="always_402"),
        "/refuses-paid-401": RouteSpec(10_000, style=g, mode="always_402", reject_status=401),
        "/drops-paid": RouteSpec(10_000, style=g, drop_paid=True),
        "/wrong-hash": RouteSpec(10_000, style=g, wrong_hash=True),
        "/no-invoice": RouteSpec(10_000, style="no_invoice"),
        "/big": RouteSpec(10_000, style=g, payload_bytes=1 << 20),
    }


@pytest.fixture
def env(tmp_path: Path, executor_server: tuple[Executor, TestServer]) -> dict[str, str]:
    executor, http = executor_server
    return base_env(
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
        **executor_env(str(http.make_url("/")), executor.token),
    )


# (path, extra args, executor mode, expected outcome, proof of a payment exists)
SCENARIOS = [
    ("/expensive", [], "ok", "denied", False),  # amount_over_cap
    ("/paid", ["--block-host", "127.0.0.1"], "ok", "denied", False),  # host_blocked
    ("/wrong-hash", [], "ok", "denied", False),  # invoice_mismatch
    ("/no-invoice", [], "ok", "challenge_error", False),
    ("/paid", ["--confirm"], "ok", "denied_by_user", False),  # stdin is /dev/null: no
    ("/paid", [], "error", "payment_failed", False),
    ("/paid", [], "bad_preimage", "payment_failed", False),  # charged, but no proof
    ("/refuses-paid", [], "ok", "credential_rejected_after_payment", True),
    ("/refuses-paid-401", [], "ok", "credential_rejected_after_payment", True),
    ("/drops-paid", [], "ok", "paid_retry_failed", True),
]


@pytest.mark.parametrize(("path", "extra", "mode", "outcome", "proof"), SCENARIOS)
async def test_no_secret_in_any_refusal_or_error_output(
    seller_server: tuple[Seller, TestServer],
    executor_server: tuple[Executor, TestServer],
    env: dict[str, str],
    path: str,
    extra: list[str],
    mode: str,
    outcome: str,
    proof: bool,
) -> None:
    (seller, server), executor = seller_server, executor_server[0]
    executor.mode = mode
    url = str(server.make_url(path))
    args = ["fetch", url, "--max-msats", "50000", "--no-cache", *extra]
    text, as_json = await run_cli(args, env), await run_cli([*args, "--json"], env)

    forms = secret_forms(seller.minted, seller.preimages.values()) | {executor.token}
    assert len(seller.minted) >= 2  # the challenges really carried macaroons
    for run in (text, as_json):
        assert run.code == 1, run.err
        assert leaks(run.out + run.err, forms) == []
        assert "Traceback" not in run.err
    report = json.loads(as_json.out)
    assert (report["outcome"], report["ok"]) == (outcome, False)
    assert report["status"] in (401, 402)
    assert (report["bodyWithheld"], report["body"]) == (True, None)
    assert text.out == ""  # the challenge body is not printed
    assert outcome in text.err
    assert len(text.err.strip().splitlines()) <= 2
    if proof:  # the proof reference is shown so the payment can be found
        assert re.fullmatch(r"preimage:[0-9a-f]{16}", report["proofReference"])
        assert re.search(r"\(preimage:[0-9a-f]{16}\)", text.err)  # each run paid its own
    if mode == "bad_preimage":  # money may have moved: say how much
        assert report["spentMsats"] == 10_000
        assert "10000 msat" in text.err


async def test_over_cap_refusal_reports_the_quote(
    seller_server: tuple[Seller, TestServer], env: dict[str, str]
) -> None:
    url = str(seller_server[1].make_url("/expensive"))
    args = ["fetch", url, "--max-msats", "50000", "--no-cache"]
    text, as_json = await run_cli(args, env), await run_cli([*args, "--json"], env)
    report = json.loads(as_json.out)
    assert {k: report[k] for k in ("host", "quoteMsats", "capMsats", "denyReasonCode")} == {
        "host": "127.0.0.1",
        "quoteMsats": 250_000,
        "capMsats": 50_000,
        "denyReasonCode": "amount_over_cap",
    }
    assert text.err.strip() == (
        "l402-buyer: not paid (402 denied): amount_over_cap: quote 250000 msat exceeds cap "
        "50000 msat [host 127.0.0.1, quote 250000 msat, cap 50000 msat]"
    )


async def _spawn_into_pipe(args: list[str], env: dict[str, str], write_fd: int) -> Run:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=write_fd,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    os.close(write_fd)
    assert proc.stderr is not None
    async with asyncio.timeout(DEADLINE):
        err = await proc.stderr.read()
        code = await proc.wait()
    return Run(code, "", err.decode())


async def test_json_piped_into_head_exits_quietly(
    seller_server: tuple[Seller, TestServer], env: dict[str, str]
) -> None:
    """`fetch --json | head -c1` with a real pipe: the 1 MiB report cannot fit the pipe."""
    seller, server = seller_server
    read_fd, write_fd = os.pipe()
    head = await asyncio.create_subprocess_exec(
        "head", "-c1", stdin=read_fd, stdout=asyncio.subprocess.PIPE
    )
    os.close(read_fd)
    url = str(server.make_url("/big"))
    run = await _spawn_into_pipe(["fetch", url, "--max-msats", "50000", "--json"], env, write_fd)
    async with asyncio.timeout(DEADLINE):
        first, _ = await head.communicate()
    assert first == b"{"
    assert (run.code, run.err) == (0, "")  # the fetch succeeded; the early close is not an error
    assert seller.served["/big"] == 1
    again = await run_cli(["fetch", url, "--max-msats", "50000", "--json"], env)
    assert json.loads(again.out)["cacheStatus"] == "hit"  # the credential was saved all the same


@pytest.mark.parametrize("as_json", [False, True])
async def test_closed_stdout_keeps_the_runs_exit_code(
    seller_server: tuple[Seller, TestServer], env: dict[str, str], as_json: bool
) -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # the reader is gone before the buyer writes anything
    url = str(seller_server[1].make_url("/expensive"))
    args = ["fetch", url, "--max-msats", "50000", *(["--json"] if as_json else [])]
    run = await _spawn_into_pipe(args, env, write_fd)
    assert run.code == 1  # refused over cap, as without the pipe; not 120 or 141
    assert "Traceback" not in run.err
    assert "BrokenPipe" not in run.err
    assert ("amount_over_cap" in run.err) is not as_json


async def test_closed_stderr_and_stdout(
    seller_server: tuple[Seller, TestServer], env: dict[str, str]
) -> None:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.close(out_r)
    os.close(err_r)
    url = str(seller_server[1].make_url("/expensive"))
    proc = await asyncio.create_subprocess_exec(
        *CLI, "fetch", url, "--max-msats", "50000", env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=out_w, stderr=err_w,
    )  # fmt: skip
    os.close(out_w)
    os.close(err_w)
    async with asyncio.timeout(DEADLINE):
        assert await proc.wait() == 1


def test_scrub_removes_secret_shapes_only() -> None:
    macaroon = mint_macaroon(b"k" * 32, b"h" * 32)
    raw_hex = base64.b64decode(macaroon).hex()
    preimage = "ab" * 32
    text = f"bad {macaroon} / {raw_hex} / {preimage.upper()} in /tmp/some_dir/x-y.json"
    cleaned = scrub(text)
    assert leaks(cleaned, secret_forms([macaroon], [bytes.fromhex(preimage)])) == []
    assert cleaned.endswith("in /tmp/some_dir/x-y.json")
    assert scrub("preimage:abababababababab 10000 msat") == "preimage:abababababababab 10000 msat"
