#!/usr/bin/env bash
# Install PostgreSQL, Prometheus and Chromium from Debian's packages when missing.
#
# Chromium is the headless browser tests/browser drive through Playwright
# (launched from /usr/bin/chromium; no browser is ever downloaded).
#
# Tests start their own throw-away instances (initdb/pg_ctl into a temp dir,
# prometheus on a free port), so the system services the packages would start
# are unwanted: we keep them from starting during the install and stop and
# disable anything that started anyway. Idempotent: a no-op when the binaries
# are already present.
set -euo pipefail

have_initdb() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

have_prometheus() {
    command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
}

have_chromium() {
    command -v chromium >/dev/null 2>&1
}

stop_services() {
    # PostgreSQL: every cluster the package created, then the umbrella service.
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters --no-header 2>/dev/null | while read -r ver name _port status _rest; do
            if [[ "$status" == online* ]]; then
                pg_ctlcluster --force "$ver" "$name" stop || true
            fi
            conf="/etc/postgresql/$ver/$name/start.conf"
            if [[ -w "$conf" ]]; then
                echo manual >"$conf"
            fi
        done
    fi
    for svc in postgresql prometheus; do
        if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
            systemctl stop "$svc" >/dev/null 2>&1 || true
            systemctl disable "$svc" >/dev/null 2>&1 || true
        else
            service "$svc" stop >/dev/null 2>&1 || true
            if command -v update-rc.d >/dev/null 2>&1; then
                update-rc.d "$svc" disable >/dev/null 2>&1 || true
            fi
        fi
    done
}

if have_initdb && have_prometheus && have_chromium; then
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "ensure-system-deps: postgresql/prometheus/chromium missing and not root; run as root" >&2
    exit 1
fi

# Forbid service starts from maintainer scripts (invoke-rc.d honours policy-rc.d).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    created_policy=1
fi
cleanup() {
    if [[ "$created_policy" -eq 1 ]]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    postgresql prometheus chromium >/dev/null

stop_services

if ! have_initdb || ! have_prometheus || ! have_chromium; then
    echo "ensure-system-deps: install finished but initdb/prometheus/promtool/chromium still missing" >&2
    exit 1
fi
echo "ensure-system-deps: postgresql, prometheus and chromium installed (system services stopped)"
