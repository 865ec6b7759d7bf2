"""`python -m gateway.regtest up|down`: behind `make regtest-up` and `make regtest-down`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.regtest.network import REPO_ROOT, RegtestNetwork, stop_from_descriptor

DEFAULT_DESCRIPTOR = REPO_ROOT / ".regtest" / "network.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.regtest")
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--descriptor", type=Path, default=DEFAULT_DESCRIPTOR)
    parser.add_argument("--keep", action="store_true", help="keep the data directory on down")
    args = parser.parse_args(argv)
    if args.command == "up":
        if args.descriptor.exists():
            print(f"a network is already up ({args.descriptor}); run `make regtest-down`")
            return 1
        network = RegtestNetwork(detached=True, keep=True)
        desc = network.start()
        desc.write(args.descriptor)
        print(f"regtest network up in {network.timings['total']:.1f}s")
        print(f"descriptor: {args.descriptor}")
        return 0
    if not args.descriptor.exists():
        print(f"no network descriptor at {args.descriptor}; nothing to stop")
        return 0
    stopped = stop_from_descriptor(args.descriptor, keep=args.keep)
    print(f"stopped {len(stopped)} process(es): {' '.join(map(str, stopped))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
