# Operator and developer entry points. `make rehearse` and `make test` do all
# the set-up themselves on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup lock protos protos-check binaries system-deps lint typecheck test test-unit \
        regtest-up regtest-down rehearse run bench bench-peers bench-grpc aperture prometheus clean

setup: $(STAMP)

# Every dependency from the hashed lock (extras dev, buyer and mcp, and the build
# backend), then the project itself as an editable install without resolving anything.
$(STAMP): pyproject.toml constraints/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r constraints/dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m pip check --disable-pip-version-check >/dev/null
	touch $(STAMP)

# Regenerate the hashed locks in constraints/ from pyproject.toml, then install them.
# After adding or changing a pin in pyproject.toml: `make lock`. LOCK_ARGS=--upgrade
# moves every package to its newest release (docs/packaging.md).
lock:
	scripts/lock.sh $(LOCK_ARGS)
	$(MAKE) setup

# Regenerate the Python gRPC stubs from protos/ (hand-written LND subsets).
protos: setup
	scripts/gen-protos.sh

# CI: regenerating must not change the committed stubs.
protos-check: setup
	scripts/gen-protos.sh --check

# lnd, lncli, btcd, btcctl: built from the Go module proxy once, cached by version.
binaries:
	deploy/regtest/build.sh >/dev/null

# PostgreSQL and Prometheus from Debian's packages (tests start their own instances).
system-deps:
	scripts/ensure-system-deps.sh

lint: setup
	$(PY) -m ruff check gateway tests bench
	$(PY) -m ruff format --check gateway tests bench

# tests/ is a namespace package (imported as tests.xxx): hence --explicit-package-bases.
typecheck: setup
	$(PY) -m mypy --explicit-package-bases gateway tests

test-unit: setup
	$(PY) -m pytest -m "not regtest and not postgres and not prometheus" -q

# Aperture is built before pytest (a cold build outlasts any test's timeout); without
# its source the tests that need it skip, unless L402_REQUIRE_APERTURE=1 (.ci/run).
test: setup binaries aperture system-deps protos-check lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider

regtest-up: setup binaries
	$(PY) -m gateway.regtest up

regtest-down: setup
	$(PY) -m gateway.regtest down

rehearse: setup binaries
	$(PY) -m gateway.rehearsal

run: setup binaries
	$(PY) -m gateway.rehearsal --serve

# The real Aperture (benchmark peer, migration tests): built from its source tarball
# once, cached by version. Exit 3 = no source: `bench` then measures our side alone.
aperture:
	deploy/aperture/build.sh >/dev/null || test $$? -eq 3

# Our gateway beside Aperture and the bare upstream, same route, LND and wrk load.
bench: setup binaries aperture
	bench/ensure-wrk.sh
	$(PY) bench/gateway_bench.py

# As bench, but a missing Aperture is an error instead of a note; then gRPC beside Aperture.
bench-peers: setup binaries aperture
	bench/ensure-wrk.sh
	L402_REQUIRE_APERTURE=1 $(PY) bench/gateway_bench.py
	L402_REQUIRE_APERTURE=1 $(PY) bench/grpc_bench.py

# gRPC alone: ours (h2c and TLS upstream, 1 and 2 workers) beside Aperture (TLS upstream).
bench-grpc: setup binaries aperture
	$(PY) bench/grpc_bench.py

# Prometheus files for a deployment: absolute runbook links (RUNBOOK_URL, where
# docs/runbook.md is published) and the admin target, into build/prometheus/.
ADMIN_TARGET ?= 127.0.0.1:8402
prometheus:
	@test -n "$(RUNBOOK_URL)" || { echo "usage: make prometheus RUNBOOK_URL=https://.../runbook.md [ADMIN_TARGET=host:port]" >&2; exit 2; }
	$(PYTHON) deploy/prometheus/render.py --runbook-url "$(RUNBOOK_URL)" --admin-target "$(ADMIN_TARGET)" --out build/prometheus

clean:
	rm -rf $(VENV) .venv-lock .pytest_cache .mypy_cache .ruff_cache
