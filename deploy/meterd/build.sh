#!/usr/bin/env bash
# Build Aperture master's reference price server, meterd (the peer our pricer
# client is tested against), from the master source tarball into a cache
# directory keyed by commit, outside the work tree. Its Go dependencies come
# from the Go module proxy. Nothing of Aperture is committed here: only this
# script.
#
# Source: $METERD_SRC (a .tar.gz or an unpacked directory), else
# ../shared/peers/aperture-master-<commit>.tar.gz beside the checkout.
# Prints the binary's path on stdout (and nothing else); exits 3 when no
# source can be found, so callers can skip with a clear message.
set -euo pipefail
commit=${METERD_COMMIT:-7ee3ed7}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cache_root=${L402_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/l402-gateway/bin}
out="$cache_root/meterd-$commit"
if [ -x "$out/meterd" ]; then echo "$out/meterd"; exit 0; fi

src=${METERD_SRC:-}
if [ -z "$src" ]; then
    for candidate in "$top/../shared/peers/aperture-master-$commit.tar.gz" \
                     "$top/../../shared/peers/aperture-master-$commit.tar.gz"; do
        if [ -e "$candidate" ]; then src=$candidate; break; fi
    done
fi
if [ -z "$src" ] || [ ! -e "$src" ]; then
    echo "Aperture master $commit source not found: set METERD_SRC or provide ../shared/peers/aperture-master-$commit.tar.gz" >&2
    exit 3
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/l402-meterd-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ -d "$src" ]; then
    cp -a "$src/." "$work/src"
else
    mkdir -p "$work/src"
    tar -xzf "$src" -C "$work/src"
    # The tarball holds one top directory (aperture-<commit>/).
    inner=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    if [ -n "$inner" ] && [ -f "$inner/go.mod" ]; then work_src=$inner; fi
fi
work_src=${work_src:-$work/src}
start=$(date +%s)
echo "building meterd ($commit) into $out" >&2
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
(cd "$work_src" && CGO_ENABLED=0 go build -trimpath -o "$out.tmp/meterd" ./cmd/meterd) >&2
rm -rf "$out" && mv "$out.tmp" "$out"
echo "built in $(( $(date +%s) - start )) s" >&2
echo "$out/meterd"
