"""`python -m gateway.rehearsal`: the EP212 rehearsal end to end (`make rehearse`).

With `--serve` (`make run`) it brings up the network and the seller stack,
prints how to pay by hand, and leaves them running until `make regtest-down`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.regtest.__main__ import DEFAULT_DESCRIPTOR, SERVICES_FILE
from gateway.regtest.network import REPO_ROOT, Descriptor, RegtestNetwork
from gateway.regtest.processes import wait_until
from gateway.rehearsal.checks import CAP_MSATS, check_metrics, check_summary
from gateway.rehearsal.stack import ROUTE_A_PATH, ROUTE_B_PATH, SATS4AI_PATH, SellerStack

DEFAULT_WORKDIR = REPO_ROOT / "artifacts" / "rehearsal"


@dataclass
class RehearsalResult:
    summary: dict[str, Any]
    problems: list[str]
    artifact_dir: Path
    workdir: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def buyer_env(desc: Descriptor, stack: SellerStack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OA_LIGHTNING_")}
    env.update(
        {
            "OA_LIGHTNING_OPS_EP212_SATS4AI_URL": stack.public_url + SATS4AI_PATH,
            "OA_LIGHTNING_OPS_EP212_ROUTE_A_URL": stack.public_url + ROUTE_A_PATH,
            "OA_LIGHTNING_OPS_EP212_ROUTE_B_URL": stack.public_url + ROUTE_B_PATH,
            "OA_LIGHTNING_OPS_EP212_MAX_SPEND_MSATS": str(CAP_MSATS),
            "L402_BUYER_LND_HOST": desc.buyer.rpc,
            "L402_BUYER_LND_TLS_CERT": desc.buyer.tls_cert,
            "L402_BUYER_LND_MACAROON": desc.buyer.admin_macaroon,
        }
    )
    return env


def run_rehearsal(desc: Descriptor, workdir: Path) -> RehearsalResult:
    """Seller stack up, buyer runner as a subprocess, then compare outcomes; stops the stack."""
    artifact_dir = workdir / "buyer"
    timings: dict[str, float] = {}
    t = time.monotonic()
    stack = SellerStack.start(desc, workdir / "seller")
    timings["seller_stack"] = time.monotonic() - t
    try:
        t = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway.buyer",
                "ep212",
                "--json",
                "--mode",
                "regtest",
                "--artifact-dir",
                str(artifact_dir),
            ],
            env=buyer_env(desc, stack),
            capture_output=True,
            text=True,
            timeout=300,
        )
        timings["buyer_runner"] = time.monotonic() - t
        try:
            summary = json.loads(proc.stdout)
        except ValueError:
            summary = {"ok": False, "error": f"runner printed no JSON: {proc.stderr[-2000:]}"}
        problems = []
        if proc.returncode != 0:
            problems.append(f"buyer runner exited {proc.returncode}: {summary.get('error')}")
        problems += check_summary(summary)
        if not problems:
            # Settlement is booked from LND's invoice stream: give it a moment to arrive.
            t = time.monotonic()
            key = 'l402_revenue_msats_total{route="sats4ai-text-generation"}'
            with contextlib.suppress(TimeoutError):  # check_metrics reports the difference
                wait_until(
                    "settlements booked by the gateway",
                    lambda: stack.metrics().get(key, 0) >= 84_000,
                    30,
                )
            timings["settlement"] = time.monotonic() - t
            problems += check_metrics(stack.metrics())
        (workdir / "seller" / "metrics.txt").write_text(stack.metrics_text())
    finally:
        stack.stop()
    return RehearsalResult(summary, problems, artifact_dir, workdir, timings)


def report(result: RehearsalResult, wall: float) -> str:
    s = result.summary
    a, b, c = s.get("openAgentsRoute", {}), s.get("overCap", {}), s.get("sats4ai", {})
    lines = [
        f"EP212 rehearsal on regtest: {'PASS' if result.ok else 'FAIL'} in {wall:.1f}s",
        f"  route A  paid {a.get('paidAmountMsats')} msat -> {a.get('paidStatusCode')}, "
        f"repeat cache hit={a.get('repeatCacheHit')} ({a.get('proofReference')})",
        f"  route B  quoted {b.get('quotedAmountMsats')} msat, blocked={b.get('blocked')} "
        f"({b.get('denyReasonCode')}, cap {b.get('maxSpendMsats')}), payer calls "
        f"{b.get('payerCallsBefore')} -> {b.get('payerCallsAfter')}",
        f"  sats4ai stand-in (per-request) paid {c.get('firstAmountMsats')} msat twice: "
        f"second paid={c.get('secondPaid')}, cacheHit={c.get('cacheHit')}",
        f"  artifacts: {result.artifact_dir / 'summary.json'}",
        f"             {result.artifact_dir / 'events.jsonl'}",
        f"  seller logs and /metrics snapshot: {result.workdir / 'seller'}",
    ]
    lines += [f"  DIFFERENCE: {p}" for p in result.problems]
    return "\n".join(lines)


def rehearse(workdir: Path) -> int:
    start = time.monotonic()
    shutil.rmtree(workdir, ignore_errors=True)  # artifacts of this run only
    with RegtestNetwork() as desc:
        result = run_rehearsal(desc, workdir)
    wall = time.monotonic() - start
    print(report(result, wall))
    return 0 if result.ok else 1


def _q(value: str) -> str:
    """Shell-quoted, for lines meant to be pasted."""
    return shlex.quote(value)


def admin_lines(stack: SellerStack) -> str:
    """How to call the admin API of the stack `make run` left up (curl, CLI, MCP)."""
    if stack.admin_token_file is None:
        return "Admin API: off (no admin.token_file in the config)\n"
    token = _q(str(stack.admin_token_file))
    auth = f'"Authorization: Bearer $(cat {token})"'
    return f"""Admin API (on; bearer secret in {stack.admin_token_file}, mode 0600):
  curl -s -H {auth} '{stack.admin_url}/admin/tokens?limit=5'
  curl -s -H {auth} {stack.admin_url}/admin/routes
  .venv/bin/l402-gateway tokens list --config "$L402_GATEWAY_CONFIG" --via api
  .venv/bin/l402-gateway report --config "$L402_GATEWAY_CONFIG" --via api
  .venv/bin/l402-gateway mcp --config "$L402_GATEWAY_CONFIG"   # MCP server on stdio (docs/mcp.md)
"""


def banner(desc: Descriptor, stack: SellerStack) -> str:
    """What `make run` prints: where everything is, and lines to paste into a shell.

    The seller node's host, cert and invoice macaroon are what a gateway (or
    `l402-gateway prune`, or a second gateway) needs; the buyer's are what
    `l402-buyer` needs; the admin API's secret file is what curl and the CLI
    send. Paths are absolute; macaroons and the admin secret are files, never
    printed.
    """
    seller, buyer = desc.seller, desc.buyer
    lncli = (
        f"{desc.bin_dir}/lncli --network=regtest --rpcserver={buyer.rpc} "
        f"--tlscertpath={buyer.tls_cert} --macaroonpath={buyer.admin_macaroon}"
    )
    return f"""regtest network and gateway are up (stop everything with `make regtest-down`)
  gateway     {stack.public_url}   admin {stack.admin_url} (/healthz /readyz /metrics /admin/)
  config      {stack.config_path}
  descriptor  {DEFAULT_DESCRIPTOR}

Seller LND (the gateway's node):
  host        {seller.rpc}
  tls cert    {seller.tls_cert}
  macaroon    {seller.invoice_macaroon}   (invoice.macaroon, what the gateway runs with)
  pubkey      {seller.pubkey or "-"}   p2p {seller.p2p}
Buyer LND (pays the invoices):
  host        {buyer.rpc}
  tls cert    {buyer.tls_cert}
  macaroon    {buyer.admin_macaroon}

Paste into a shell:
  export L402_SELLER_LND_HOST={_q(seller.rpc)}
  export L402_SELLER_LND_TLS_CERT={_q(seller.tls_cert)}
  export L402_SELLER_LND_MACAROON={_q(seller.invoice_macaroon)}
  export L402_BUYER_LND_HOST={_q(buyer.rpc)}
  export L402_BUYER_LND_TLS_CERT={_q(buyer.tls_cert)}
  export L402_BUYER_LND_MACAROON={_q(buyer.admin_macaroon)}
  export L402_GATEWAY_CONFIG={_q(str(stack.config_path))}

Pay by hand:
  curl -si {stack.public_url}{ROUTE_A_PATH}            # 402 with macaroon + invoice
  {lncli} payinvoice --force <invoice>
  curl -s -H 'Authorization: L402 <macaroon>:<preimage>' {stack.public_url}{ROUTE_A_PATH}
Or let the buyer do it (uses the L402_BUYER_LND_* exports above):
  .venv/bin/l402-buyer fetch {stack.public_url}{ROUTE_A_PATH} --max-msats 100000
Then look at what was sold:
  .venv/bin/l402-gateway tokens list --config "$L402_GATEWAY_CONFIG"
  .venv/bin/l402-gateway report --config "$L402_GATEWAY_CONFIG"

{admin_lines(stack)}"""


def serve(workdir: Path) -> int:
    """`make run`: leave the network and seller stack up for manual use."""
    if DEFAULT_DESCRIPTOR.exists():
        print(f"a network is already up ({DEFAULT_DESCRIPTOR}); run `make regtest-down` first")
        return 1
    network = RegtestNetwork(detached=True)  # `make regtest-down` removes the data
    desc = network.start()
    desc.write(DEFAULT_DESCRIPTOR)
    try:
        stack = SellerStack.start(desc, workdir / "seller", detached=True)
    except BaseException:
        network.stop()
        DEFAULT_DESCRIPTOR.unlink(missing_ok=True)
        raise
    stack.write(SERVICES_FILE)
    print(banner(desc, stack), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.rehearsal")
    parser.add_argument("--serve", action="store_true", help="bring everything up and leave it")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    return serve(args.workdir) if args.serve else rehearse(args.workdir)


if __name__ == "__main__":
    sys.exit(main())
