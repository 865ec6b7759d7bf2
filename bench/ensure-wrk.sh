#!/usr/bin/env bash
# The benchmark's load generator: wrk from Debian's package, installed when
# missing (as root; otherwise say how). Idempotent.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then exit 0; fi
if [[ "$(id -u)" -ne 0 ]]; then
    echo "ensure-wrk: wrk is missing; install it (apt-get install wrk) or run as root" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
command -v wrk >/dev/null 2>&1 || { echo "ensure-wrk: install finished but wrk is missing" >&2; exit 1; }
echo "ensure-wrk: wrk installed"
