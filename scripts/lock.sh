#!/usr/bin/env bash
# Regenerate the hashed lock files in constraints/ from pyproject.toml (`make lock`).
#
#   scripts/lock.sh                  keep every pin that still fits, resolve what changed
#   scripts/lock.sh --upgrade        move every package to its newest release that fits
#   scripts/lock.sh -P NAME          move only NAME (repeatable)
#   scripts/lock.sh --tools          regenerate constraints/lock-tools.txt itself
#
# The locks, one per install profile (docs/packaging.md):
#   constraints/dev.txt      everything `make setup` installs: extras dev, buyer, mcp,
#                            plus the build backend (setuptools) for the editable install
#   constraints/runtime.txt  the seller (`pip install l402-gateway`)
#   constraints/buyer.txt    the seller's dependencies plus the buyer extra
#   constraints/mcp.txt      the seller's dependencies plus the mcp extra
#   constraints/build.txt    the build backend alone (building the wheel, e.g. in Docker)
# dev.txt is resolved first and the others are resolved within it (-c), so a package
# has the same version and hashes in every file.
#
# pip-compile runs from its own venv (.venv-lock), installed from
# constraints/lock-tools.txt with --require-hashes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TOOLS=${LOCK_VENV:-.venv-lock}
OUT=constraints

tools_only=0
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --tools) tools_only=1 ;;
        --upgrade|-U) extra+=(--upgrade) ;;
        -P|--upgrade-package) extra+=(--upgrade-package "$2"); shift ;;
        *) echo "usage: scripts/lock.sh [--upgrade | -P NAME ...] | --tools" >&2; exit 2 ;;
    esac
    shift
done

# Machine-specific pip settings must never be written into a lock file.
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT PIP_REQUIRE_HASHES
export CUSTOM_COMPILE_COMMAND="make lock"

compile() {  # compile OUTPUT [pip-compile options...] SOURCE
    local out=$1
    shift
    "$TOOLS/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
        --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
        --output-file "$out" "$@"
}

if [ "$tools_only" = 1 ]; then
    # Bootstrap: pip-tools from the index once (unhashed), then it locks itself.
    rm -rf "$TOOLS"
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$OUT/lock-tools.in"
    compile "$OUT/lock-tools.txt" "${extra[@]}" "$OUT/lock-tools.in"
    rm -rf "$TOOLS"  # the next run installs the tools from the hashed lock
    echo "wrote $OUT/lock-tools.txt"
    exit 0
fi

stamp="$TOOLS/.lock-tools.txt"
if ! cmp -s "$OUT/lock-tools.txt" "$stamp" 2>/dev/null; then
    rm -rf "$TOOLS"
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check \
        --require-hashes -r "$OUT/lock-tools.txt"
    cp "$OUT/lock-tools.txt" "$stamp"
fi

compile "$OUT/dev.txt" "${extra[@]}" --extra dev --extra buyer --extra mcp --all-build-deps \
    pyproject.toml
# Resolved afresh within dev.txt: every version is dev.txt's, nothing is kept from before.
rm -f "$OUT/runtime.txt" "$OUT/buyer.txt" "$OUT/mcp.txt" "$OUT/build.txt"
compile "$OUT/runtime.txt" -c "$OUT/dev.txt" pyproject.toml
compile "$OUT/buyer.txt" -c "$OUT/dev.txt" --extra buyer pyproject.toml
compile "$OUT/mcp.txt" -c "$OUT/dev.txt" --extra mcp pyproject.toml
compile "$OUT/build.txt" -c "$OUT/dev.txt" --only-build-deps --build-deps-for wheel pyproject.toml
echo "wrote $OUT/dev.txt runtime.txt buyer.txt mcp.txt build.txt; run \`make setup\` to install"
