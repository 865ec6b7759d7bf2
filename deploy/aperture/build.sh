#!/usr/bin/env bash
# Build the real Aperture (the peer our compatibility tests and benchmarks run
# against) from its source tarball into a cache directory keyed by version,
# outside the work tree. Its Go dependencies come from the Go module proxy.
# Nothing of Aperture is committed here: only this script.
#
# Source: $APERTURE_SRC (a .tar.gz or an unpacked directory), else
# ../shared/peers/aperture-<version>.tar.gz beside the checkout.
# Prints the binary's path on stdout (and nothing else); exits 3 when no
# source can be found, so callers can skip with a clear message.
set -euo pipefail
version=${APERTURE_VERSION:-v0.5.0}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cache_root=${L402_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/l402-gateway/bin}
out="$cache_root/aperture-$version"
if [ -x "$out/aperture" ]; then echo "$out/aperture"; exit 0; fi

src=${APERTURE_SRC:-}
if [ -z "$src" ]; then
    for candidate in "$top/../shared/peers/aperture-$version.tar.gz" \
                     "$top/../../shared/peers/aperture-$version.tar.gz"; do
        if [ -e "$candidate" ]; then src=$candidate; break; fi
    done
fi
if [ -z "$src" ] || [ ! -e "$src" ]; then
    echo "Aperture $version source not found: set APERTURE_SRC or provide ../shared/peers/aperture-$version.tar.gz" >&2
    exit 3
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/l402-aperture-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ -d "$src" ]; then
    cp -a "$src/." "$work/src"
else
    mkdir -p "$work/src"
    tar -xzf "$src" -C "$work/src"
    # The tarball holds one top directory (aperture-<version>/).
    inner=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    if [ -n "$inner" ] && [ -f "$inner/go.mod" ]; then work_src=$inner; fi
fi
work_src=${work_src:-$work/src}
start=$(date +%s)
echo "building Aperture $version into $out (about 6 minutes cold on 2 cores)" >&2
mkdir -p "$out.tmp"
(cd "$work_src" && CGO_ENABLED=0 go build -trimpath -o "$out.tmp/aperture" ./cmd/aperture) >&2
rm -rf "$out" && mv "$out.tmp" "$out"
echo "built in $(( $(date +%s) - start )) s" >&2
echo "$out/aperture"
