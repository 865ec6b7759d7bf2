"""`python -m gateway.regtest up|down`: behind `make regtest-up` and `make regtest-down`."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from gateway.regtest.network import REPO_ROOT, RegtestNetwork, stop_from_descriptor
from gateway.regtest.processes import stop_pid

DEFAULT_DESCRIPTOR = REPO_ROOT / ".regtest" / "network.json"
# Written by `make run`: the gateway and demo upstream it left running beside the network.
SERVICES_FILE = REPO_ROOT / ".regtest" / "services.json"


def stop_services() -> list[int]:
    if not SERVICES_FILE.exists():
        return []
    pids = json.loads(SERVICES_FILE.read_text()).get("pids", {})
    stopped = [pid for pid in pids.values() if stop_pid(int(pid))]
    SERVICES_FILE.unlink()
    return stopped


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
    stopped = stop_services()
    if not args.descriptor.exists():
        print(f"no network descriptor at {args.descriptor}; stopped {len(stopped)} service(s)")
        return 0
    stopped += stop_from_descriptor(args.descriptor, keep=args.keep)
    print(f"stopped {len(stopped)} process(es): {' '.join(map(str, stopped))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
