"""The seller side of the rehearsal as real processes: demo upstream + `l402-gateway serve`.

The gateway is configured like l402.openagents.com (route A 10 sats, route B
250 sats, reusable tokens, private invoices) plus a per-request route that
stands in for sats4ai's pay-per-request text generation (42 sats, POST).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gateway.commands.admintoken import write_admin_token
from gateway.regtest.network import Descriptor
from gateway.regtest.processes import ManagedProcess, free_port, wait_until

SATS4AI_PATH = "/api/l402/text-generation"
ROUTE_A_PATH = "/ep212/premium-signal"
ROUTE_B_PATH = "/ep212/expensive-signal"
# As production runs it: a supervisor and worker processes (serve's default on 2 cores).
WORKERS = 2

ROUTES_TEMPLATE = """\
# Written by the rehearsal: l402.openagents.com's routes on a regtest seller node.
listen:
  public: "127.0.0.1:{public}"
  admin: "127.0.0.1:{admin}"
# The admin API is on: its bearer secret is in this 0600 file (written fresh each run).
admin:
  token_file: "{token_file}"
lnd:
  host: "{lnd_host}"
  tls_cert: "{tls_cert}"
  macaroon: "{macaroon}"
  timeout_seconds: 5
store:
  url: "sqlite:///{store}"
# challenge_rate_limit: the defaults (60 per minute, burst 20 per client) as in
# production; the rehearsal's few challenges from 127.0.0.1 stay well inside them.
routes:
  - name: sats4ai-text-generation
    path: '^{sats4ai}$'
    methods: [POST]
    upstream: "{upstream}"
    price_sats: 42
    token_mode: per-request
    invoice_memo: "sats4ai stand-in: text generation (pay per request)"
  - name: ep212-premium-signal
    path: '^{route_a}$'
    upstream: "{upstream}"
    price_sats: 10
    invoice_memo: "EP212 premium signal"
  - name: ep212-expensive-signal
    path: '^{route_b}$'
    upstream: "{upstream}"
    price_sats: 250
    invoice_memo: "EP212 expensive signal"
"""


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback URL)
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@dataclass
class SellerStack:
    """Upstream and gateway processes plus where their logs and config live."""

    workdir: Path
    public_url: str
    admin_url: str
    upstream_url: str
    config_path: Path
    processes: list[ManagedProcess]
    admin_token_file: Path | None = None  # the admin API's bearer secret (0600)

    @classmethod
    def start(cls, desc: Descriptor, workdir: Path, *, detached: bool = False) -> SellerStack:
        workdir.mkdir(parents=True, exist_ok=True)
        up_port, public, admin = free_port(), free_port(), free_port()
        upstream_url = f"http://127.0.0.1:{up_port}"
        config_path = workdir / "routes.yaml"
        token_file = workdir / "admin.token"
        write_admin_token(token_file, force=True)
        config_path.write_text(
            ROUTES_TEMPLATE.format(
                public=public,
                admin=admin,
                token_file=token_file,
                lnd_host=desc.seller.rpc,
                tls_cert=desc.seller.tls_cert,
                macaroon=desc.seller.invoice_macaroon,  # least privilege, as in production
                store=workdir / "tokens.db",
                upstream=upstream_url,
                sats4ai=SATS4AI_PATH,
                route_a=ROUTE_A_PATH,
                route_b=ROUTE_B_PATH,
            )
        )
        cli = [sys.executable, "-m", "gateway.cli"]
        stack = cls(
            workdir,
            f"http://127.0.0.1:{public}",
            f"http://127.0.0.1:{admin}",
            upstream_url,
            config_path,
            [],
            token_file,
        )
        try:
            stack.processes.append(
                ManagedProcess(
                    "signal-upstream",
                    [*cli, "signal-upstream", "--host", "127.0.0.1", "--port", str(up_port)],
                    workdir / "upstream.log",
                    detached=detached,
                )
            )
            stack.processes.append(
                ManagedProcess(
                    "gateway",
                    [*cli, "serve", "--config", str(config_path), "--workers", str(WORKERS)],
                    workdir / "gateway.log",
                    detached=detached,
                )
            )
            stack.wait_ready()
        except BaseException:
            stack.stop()
            raise
        return stack

    def wait_ready(self) -> None:
        def ready() -> bool:
            for proc in self.processes:
                if not proc.alive():
                    raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
            return (
                _get(self.upstream_url + "/healthz") == 200
                and _get(self.admin_url + "/readyz") == 200
            )

        wait_until("the gateway and the demo upstream", ready, 30)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()

    def metrics_text(self) -> str:
        """The gateway's /metrics exposition, as Prometheus would scrape it."""
        with urllib.request.urlopen(self.admin_url + "/metrics", timeout=5) as r:  # noqa: S310
            return str(r.read().decode())

    def metrics(self) -> dict[str, float]:
        """The gateway's l402_* samples, keyed by their exposition name with labels."""
        out: dict[str, float] = {}
        for line in self.metrics_text().splitlines():
            if line.startswith("l402_"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def describe(self) -> dict[str, object]:
        """services.json: where things are, and which processes `regtest down` may stop."""
        port = self.upstream_url.rpartition(":")[2]
        markers = {"gateway": str(self.config_path), "signal-upstream": f"--port {port}"}
        return {
            "public_url": self.public_url,
            "admin_url": self.admin_url,
            "upstream_url": self.upstream_url,
            "config": str(self.config_path),
            "admin_token_file": str(self.admin_token_file) if self.admin_token_file else None,
            "processes": {
                p.name: {"pid": p.pid, "start_ticks": p.start_ticks, "marker": markers.get(p.name)}
                for p in self.processes
            },
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.describe(), indent=2) + "\n")
