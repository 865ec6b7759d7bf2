"""`python -m gateway.regtest up|down`: behind `make regtest-up` and `make regtest-down`."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from gateway.regtest.network import REPO_ROOT, RegtestNetwork, stop_from_descriptor
from gateway.regtest.owned import Outcome, Recorded, StopResult, stop_owned

DEFAULT_DESCRIPTOR = REPO_ROOT / ".regtest" / "network.json"
# Written by `make run` beside the descriptor: the gateway and demo upstream it left running.
SERVICES_NAME = "services.json"
SERVICES_FILE = DEFAULT_DESCRIPTOR.parent / SERVICES_NAME


def recorded_services(data: dict[str, Any]) -> list[Recorded]:
    """`processes` as SellerStack.describe writes them; a file from before start times were
    recorded has only `pids`, told apart by their command lines (config path, upstream port)."""
    if "processes" in data:
        return [
            Recorded(name, int(p["pid"]), p.get("start_ticks"), p.get("marker"))
            for name, p in data["processes"].items()
        ]
    port = str(data.get("upstream_url", "")).rpartition(":")[2]
    legacy = {"gateway": str(data.get("config", "")) or None, "signal-upstream": f"--port {port}"}
    return [Recorded(name, int(pid), None, legacy.get(name)) for name, pid in data["pids"].items()]


def stop_services(path: Path) -> list[StopResult]:
    if not path.exists():
        return []
    results = [stop_owned(p) for p in recorded_services(json.loads(path.read_text()))]
    path.unlink()
    return results


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.regtest")
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--descriptor", type=Path, default=DEFAULT_DESCRIPTOR)
    parser.add_argument("--keep", action="store_true", help="keep the data directory on down")
    args = parser.parse_args(argv)
    if args.command == "up":
        # Its daemons are detached, so a SIGTERM must unwind like Ctrl-C to stop them.
        signal.signal(signal.SIGTERM, _interrupt)
        if args.descriptor.exists():
            print(f"a network is already up ({args.descriptor}); run `make regtest-down`")
            return 1
        # On success the daemons outlive us and `down` removes the data; a failed or
        # interrupted start removes it at once.
        network = RegtestNetwork(detached=True)
        desc = network.start()
        desc.write(args.descriptor)
        print(f"regtest network up in {network.timings['total']:.1f}s")
        print(f"descriptor: {args.descriptor}")
        return 0
    results = stop_services(args.descriptor.parent / SERVICES_NAME)
    if args.descriptor.exists():
        results += stop_from_descriptor(args.descriptor, keep=args.keep)
    else:
        print(f"no network descriptor at {args.descriptor}")
    for result in results:
        print(result.line())
    stopped = sum(r.outcome is Outcome.STOPPED for r in results)
    skipped = sum(r.outcome is Outcome.SKIPPED for r in results)
    print(f"stopped {stopped} process(es), skipped {skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
