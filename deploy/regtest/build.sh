#!/usr/bin/env bash
# Build lnd, lncli, btcd and btcctl into a cache directory keyed by version,
# outside the work tree. Does nothing when all four binaries are present.
# Prints the binary directory on stdout (and nothing else).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lnd_version=$(awk '$1=="github.com/lightningnetwork/lnd" && $2 ~ /^v/{print $2; exit}' "$here/go.mod")
btcd_version=$(awk '$1=="github.com/btcsuite/btcd" && $2 ~ /^v/{print $2; exit}' "$here/go.mod")
cache_root=${L402_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/l402-gateway/bin}
out="$cache_root/lnd-${lnd_version}_btcd-${btcd_version}"
tools=(lnd lncli btcd btcctl)
missing=0
for t in "${tools[@]}"; do [ -x "$out/$t" ] || missing=1; done
if [ "$missing" = 0 ]; then echo "$out"; exit 0; fi

mkdir -p "$out.tmp"
tags="signrpc walletrpc chainrpc invoicesrpc routerrpc peersrpc"
start=$(date +%s)
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
echo "building lnd ${lnd_version} and btcd ${btcd_version} into $out (tags: $tags)" >&2
go build -trimpath -tags "$tags" -o "$out.tmp/lnd" github.com/lightningnetwork/lnd/cmd/lnd >&2
go build -trimpath -tags "$tags" -o "$out.tmp/lncli" github.com/lightningnetwork/lnd/cmd/lncli >&2
go build -trimpath -o "$out.tmp/btcd" github.com/btcsuite/btcd >&2
go build -trimpath -o "$out.tmp/btcctl" github.com/btcsuite/btcd/cmd/btcctl >&2
rm -rf "$out" && mv "$out.tmp" "$out"
echo "built in $(( $(date +%s) - start )) s" >&2
echo "$out"
