"""A throw-away regtest Lightning network: btcd plus a seller and a buyer LND with a channel.

Everything binds to 127.0.0.1 on free ports inside a fresh temporary directory.
`RegtestNetwork.start()` either returns a running network or stops whatever it
had started and raises; `stop()` ends every process by the PID it recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import bech32

from gateway.regtest.owned import Recorded, StopResult, stop_owned
from gateway.regtest.processes import ManagedProcess, free_port, wait_until

CHANNEL_SAT = 5_000_000  # the private buyer->seller channel payments use
PUBLIC_CHANNEL_SAT = 1_000_000
SELLER_PUSH_SAT = 200_000  # the seller's side of the public channel at open
SEGWIT_BLOCKS = (
    500  # btcd <= 0.25 activates segwit on regtest at height 432; coinbase matures at 100
)
REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR_PREFIX = "l402-regtest-"  # what `down` may delete; .ci/run looks for leftovers by it


def binary_dir() -> Path:
    """lnd/lncli/btcd/btcctl: $L402_REGTEST_BIN, else build or reuse the version-keyed cache."""
    env = os.environ.get("L402_REGTEST_BIN")
    if env:
        return Path(env)
    script = REPO_ROOT / "deploy" / "regtest" / "build.sh"
    out = subprocess.run([str(script)], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass
class NodeInfo:
    """What a test or command needs to talk to one LND node."""

    name: str
    pid: int
    rpc: str
    p2p: str
    lnddir: str
    tls_cert: str
    admin_macaroon: str
    invoice_macaroon: str
    readonly_macaroon: str
    pubkey: str = ""
    # Baked at bring-up: may pay and read payments, nothing else (session refunds).
    payer_macaroon: str = ""
    start_ticks: int | None = None  # with pid: which process `down` may stop

    def recorded(self) -> Recorded:
        return Recorded(f"lnd-{self.name}", self.pid, self.start_ticks, f"--lnddir={self.lnddir}")


@dataclass
class Descriptor:
    """The JSON file `regtest up` writes and `regtest down` reads."""

    dir: str
    btcd_pid: int
    btcd_rpc: str
    btcd_cert: str
    btcd_user: str
    btcd_pass: str
    seller: NodeInfo
    buyer: NodeInfo
    channel_point: str = ""
    channel_sat: int = 0
    bin_dir: str = ""
    btcd_start_ticks: int | None = None

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> Descriptor:
        raw = json.loads(path.read_text())
        raw["seller"] = NodeInfo(**raw["seller"])
        raw["buyer"] = NodeInfo(**raw["buyer"])
        return cls(**raw)

    def processes(self) -> list[Recorded]:
        """The daemons `down` stops, with what tells each from a later owner of its PID."""
        datadir = f"--datadir={Path(self.dir) / 'btcd' / 'data'}"  # as _start_btcd passes it
        btcd = Recorded("btcd", self.btcd_pid, self.btcd_start_ticks, datadir)
        return [self.seller.recorded(), self.buyer.recorded(), btcd]


class RegtestNetwork:
    """Brings the network up and down; usable as a context manager."""

    def __init__(
        self, *, bin_dir: Path | None = None, keep: bool = False, detached: bool = False
    ) -> None:
        self.bin = bin_dir or binary_dir()
        self.keep = keep
        self.detached = detached
        self.dir = Path(tempfile.mkdtemp(prefix=DATA_DIR_PREFIX))
        self.rpc_user = "regtest"
        self.rpc_pass = secrets.token_hex(16)
        self.btcd_rpc = f"127.0.0.1:{free_port()}"
        self.procs: list[ManagedProcess] = []
        self.btcd: ManagedProcess | None = None
        self.nodes: dict[str, NodeInfo] = {}
        self._lnd: dict[str, ManagedProcess] = {}
        self.descriptor: Descriptor | None = None
        self.timings: dict[str, float] = {}

    # -- public API -------------------------------------------------------------

    def start(self) -> Descriptor:
        t0 = time.monotonic()
        try:
            self._bring_up()
        except BaseException:
            # Ctrl-C or any failure: leave nothing running behind us.
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t0
        return self._describe()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Descriptor:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def mine(self, blocks: int) -> None:
        self._btcctl("generate", str(blocks))

    def stop_node(self, name: str) -> None:
        """Stop one LND (for outage tests); `start_node` brings it back on the same ports."""
        proc = self._lnd.pop(name)
        proc.stop()
        self.procs.remove(proc)

    def start_node(self, name: str) -> None:
        """Restart a stopped LND and wait until its channels are active again."""
        node = self.nodes[name]
        self._spawn_lnd(node)
        self._wait_lnd_ready(node, synced=True)
        node.pid, node.start_ticks = self._lnd[name].pid, self._lnd[name].start_ticks
        self.wait_channels_active()

    def wait_channels_active(self, timeout: float = 90) -> None:
        """Both channels active on both nodes (after a restart peers reconnect on their own)."""

        def active(name: str) -> bool:
            chans = self._lncli(name, "listchannels", "--active_only")["channels"]
            return len(chans) >= 2

        def reconnect_and_check() -> bool:
            if all(map(active, self.nodes)):
                return True
            seller = self.nodes["seller"]
            with contextlib.suppress(RuntimeError):  # "already connected" is fine
                self._lncli("buyer", "connect", f"{seller.pubkey}@{seller.p2p}")
            return False

        wait_until("channels to be active again", reconnect_and_check, timeout, interval=0.5)

    # -- bring-up ---------------------------------------------------------------

    def _bring_up(self) -> None:
        t = time.monotonic()
        # btcd mines only to an address fixed at start-up, and the buyer's address
        # exists only once its wallet does: mine one block to a burn address so the
        # tip is recent, start the buyer for an address, then restart btcd mining to it.
        burn = bech32.encode("bcrt", 0, hashlib.sha256(b"l402-burn").digest()[:20])
        assert burn is not None
        self._start_btcd(burn)
        self.mine(1)
        for name in ("seller", "buyer"):
            self.nodes[name] = self._new_node(name)
            self._spawn_lnd(self.nodes[name])
        for node in self.nodes.values():
            self._wait_lnd_ready(node)
        address = self._lncli("buyer", "newaddress", "p2wkh")["address"]
        for name in list(self._lnd):
            self.stop_node(name)
        self._stop_btcd()
        self._start_btcd(address)
        self.timings["wallets"] = time.monotonic() - t

        t = time.monotonic()
        self.mine(SEGWIT_BLOCKS)
        for node in self.nodes.values():
            self._spawn_lnd(node)
        for node in self.nodes.values():
            self._wait_lnd_ready(node, synced=True)
            node.pid, node.start_ticks = self._lnd[node.name].pid, self._lnd[node.name].start_ticks
            node.pubkey = self._lncli(node.name, "getinfo")["identity_pubkey"]
            payer = Path(node.invoice_macaroon).with_name("payer.macaroon")
            baked = self._lncli_text(node.name, "bakemacaroon", "offchain:read", "offchain:write")
            payer.write_bytes(bytes.fromhex(baked.strip()))
            node.payer_macaroon = str(payer)
        wait_until(
            "the buyer's coinbase funds",
            lambda: (
                int(self._lncli("buyer", "walletbalance")["confirmed_balance"]) > CHANNEL_SAT * 2
            ),
            60,
        )
        self.timings["chain"] = time.monotonic() - t

        t = time.monotonic()
        self._open_channel()
        self.timings["channel"] = time.monotonic() - t

    def _open_channel(self) -> None:
        """A private buyer->seller channel (like production) plus a small public one,
        opened with some of it on the seller's side so the seller can pay refunds.

        LND adds route hints for a private channel only when the counterparty is an
        advertised node, so the buyer also needs a public channel to be in the graph.
        """
        seller = self.nodes["seller"]
        self._lncli("buyer", "connect", f"{seller.pubkey}@{seller.p2p}")
        txids = []
        for amount, private in ((PUBLIC_CHANNEL_SAT, False), (CHANNEL_SAT, True)):
            args = ["openchannel", "--node_key", seller.pubkey, "--local_amt", str(amount)]
            if not private:  # the seller can pay back (session refunds) above its reserve
                args += ["--push_amt", str(SELLER_PUSH_SAT)]
            opened = self._lncli("buyer", *args, *(["--private"] if private else []))
            txids.append(opened["funding_txid"])
        self.channel_point = f"{txids[1]}:{opened.get('output_index', 0)}"
        self.mine(6)  # announcement depth for the public channel

        def active(name: str) -> bool:
            chans = self._lncli(name, "listchannels", "--active_only")["channels"]
            points = {c.get("channel_point", "").split(":")[0] for c in chans}
            return all(txid in points for txid in txids)

        wait_until(
            "the channels to be active on both sides", lambda: all(map(active, self.nodes)), 90
        )

        def has_hints() -> bool:
            inv = self._lncli("seller", "addinvoice", "--amt", "1", "--private")
            decoded = self._lncli("seller", "decodepayreq", inv["payment_request"])
            return bool(decoded.get("route_hints"))

        wait_until("private invoices with route hints", has_hints, 60, interval=0.5)

    def _start_btcd(self, mining_address: str) -> None:
        d = self.dir / "btcd"
        d.mkdir(exist_ok=True)
        argv = [
            str(self.bin / "btcd"),
            "--regtest",
            f"--datadir={d / 'data'}",
            f"--logdir={d / 'logs'}",
            f"--rpccert={d / 'rpc.cert'}",
            f"--rpckey={d / 'rpc.key'}",
            f"--rpclisten={self.btcd_rpc}",
            f"--rpcuser={self.rpc_user}",
            f"--rpcpass={self.rpc_pass}",
            f"--miningaddr={mining_address}",
            "--nolisten",
            "--txindex",
        ]
        self.btcd = self._spawn("btcd", argv, d / "btcd.out")

        def ready() -> bool:
            self._check_alive(self.btcd)
            return self._btcctl_ok("getblockcount")

        wait_until("btcd RPC", ready, 30)

    def _stop_btcd(self) -> None:
        if self.btcd is not None:
            self.btcd.stop()
            self.procs.remove(self.btcd)
            self.btcd = None

    def _new_node(self, name: str) -> NodeInfo:
        lnddir = self.dir / name
        lnddir.mkdir()
        chain = lnddir / "data" / "chain" / "bitcoin" / "regtest"
        return NodeInfo(
            name=name,
            pid=0,
            rpc=f"127.0.0.1:{free_port()}",
            p2p=f"127.0.0.1:{free_port()}",
            lnddir=str(lnddir),
            tls_cert=str(lnddir / "tls.cert"),
            admin_macaroon=str(chain / "admin.macaroon"),
            invoice_macaroon=str(chain / "invoice.macaroon"),
            readonly_macaroon=str(chain / "readonly.macaroon"),
        )

    def _spawn_lnd(self, node: NodeInfo) -> None:
        argv = [
            str(self.bin / "lnd"),
            f"--lnddir={node.lnddir}",
            f"--alias={node.name}",
            "--bitcoin.regtest",
            "--bitcoin.node=btcd",
            f"--btcd.rpchost={self.btcd_rpc}",
            f"--btcd.rpcuser={self.rpc_user}",
            f"--btcd.rpcpass={self.rpc_pass}",
            f"--btcd.rpccert={self.dir / 'btcd' / 'rpc.cert'}",
            "--noseedbackup",
            "--nobootstrap",
            "--norest",
            f"--rpclisten={node.rpc}",
            f"--listen={node.p2p}",
            "--tlsextraip=127.0.0.1",
            "--bitcoin.defaultchanconfs=1",
            "--trickledelay=50",
            "--maxpendingchannels=5",
            "--debuglevel=info",
        ]
        self._lnd[node.name] = self._spawn(f"lnd-{node.name}", argv, Path(node.lnddir) / "lnd.out")

    def _wait_lnd_ready(self, node: NodeInfo, *, synced: bool = False) -> None:
        proc = self._lnd[node.name]

        def ready() -> bool:
            self._check_alive(proc)
            if not Path(node.admin_macaroon).exists():
                return False
            try:
                info = self._lncli(node.name, "getinfo")
            except RuntimeError:
                return False
            return bool(info.get("synced_to_chain")) or not synced

        wait_until(f"lnd {node.name} to start", ready, 90, interval=0.3)

    def _spawn(self, name: str, argv: list[str], log: Path) -> ManagedProcess:
        proc = ManagedProcess(name, argv, log, detached=self.detached)
        self.procs.append(proc)
        return proc

    @staticmethod
    def _check_alive(proc: ManagedProcess | None) -> None:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early; last log lines:\n{proc.log_tail()}")

    # -- command-line tools -------------------------------------------------------

    def _btcctl_argv(self, *args: str) -> list[str]:
        return [
            str(self.bin / "btcctl"),
            "--regtest",
            f"--rpcserver={self.btcd_rpc}",
            f"--rpcuser={self.rpc_user}",
            f"--rpcpass={self.rpc_pass}",
            f"--rpccert={self.dir / 'btcd' / 'rpc.cert'}",
            *args,
        ]

    def _btcctl(self, *args: str) -> str:
        out = subprocess.run(self._btcctl_argv(*args), capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"btcctl {' '.join(args)}: {out.stderr.strip() or out.stdout}")
        return out.stdout

    def _btcctl_ok(self, *args: str) -> bool:
        argv = self._btcctl_argv(*args)
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0

    def _lncli(self, name: str, *args: str) -> Any:
        out = self._lncli_text(name, *args)
        return json.loads(out) if out.strip() else {}

    def _lncli_text(self, name: str, *args: str) -> str:
        node = self.nodes[name]
        argv = [
            str(self.bin / "lncli"),
            "--network=regtest",
            f"--rpcserver={node.rpc}",
            f"--tlscertpath={node.tls_cert}",
            f"--macaroonpath={node.admin_macaroon}",
            *args,
        ]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"lncli {name} {args[0]}: {out.stderr.strip() or out.stdout}")
        return out.stdout

    def _describe(self) -> Descriptor:
        assert self.btcd is not None
        self.descriptor = Descriptor(
            dir=str(self.dir),
            btcd_pid=self.btcd.pid,
            btcd_rpc=self.btcd_rpc,
            btcd_cert=str(self.dir / "btcd" / "rpc.cert"),
            btcd_user=self.rpc_user,
            btcd_pass=self.rpc_pass,
            seller=self.nodes["seller"],
            buyer=self.nodes["buyer"],
            channel_point=self.channel_point,
            channel_sat=CHANNEL_SAT,
            bin_dir=str(self.bin),
            btcd_start_ticks=self.btcd.start_ticks,
        )
        return self.descriptor


def stop_from_descriptor(path: Path, *, keep: bool = False) -> list[StopResult]:
    """`regtest down`: stop the daemons an earlier `up` recorded, and only those.

    A recorded PID that now belongs to another process is skipped (and said
    so); the data directory is removed only if it is one `up` created.
    """
    desc = Descriptor.read(path)
    results = [stop_owned(p) for p in desc.processes() if p.pid]
    data = Path(desc.dir)
    if not keep and data.name.startswith(DATA_DIR_PREFIX):
        shutil.rmtree(data, ignore_errors=True)
    path.unlink(missing_ok=True)
    return results
