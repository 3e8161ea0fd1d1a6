# Switchboard: `make run` starts the server, `make test` passes the tests, `make bench` prints
# the figures. Each sets up what it needs (system packages as root, the Python venv).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
CONFIG ?=
PYTEST_ARGS ?=

.PHONY: run test bench setup system peers bench-peers venv lint typecheck unit integration browser clean

run: setup
	$(VENV)/bin/switchboard serve $(if $(CONFIG),--config $(CONFIG))

setup: system venv

system: $(STAMPS)/system
$(STAMPS)/system: scripts/install-system.sh
	bash scripts/install-system.sh
	@mkdir -p $(STAMPS) && touch $@

peers: $(STAMPS)/peers
$(STAMPS)/peers: scripts/install-peers.sh
	bash scripts/install-peers.sh
	@mkdir -p $(STAMPS) && touch $@

# What only the benchmarks use (Janus, for the side-by-side figures).
bench-peers: $(STAMPS)/bench-peers
$(STAMPS)/bench-peers: scripts/install-bench.sh
	bash scripts/install-bench.sh
	@mkdir -p $(STAMPS) && touch $@

venv: $(STAMPS)/venv
$(STAMPS)/venv: pyproject.toml setup.py $(wildcard native/*.c native/*.py gateway/*.py gateway/media/*.py gateway/*.pxd gateway/media/*.pxd) $(STAMPS)/system
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@mkdir -p $(STAMPS) && touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

integration: setup peers
	$(VENV)/bin/pytest -q tests/integration $(PYTEST_ARGS)

# Browser tests: the server and headless Chromium in a network namespace with only loopback.
browser: setup peers
	unshare -n -- bash -c 'ip link set lo up && $(VENV)/bin/pytest -q tests/browser $(PYTEST_ARGS)'

test: setup peers lint
	$(VENV)/bin/pytest -q tests --ignore=tests/browser $(PYTEST_ARGS)
	$(MAKE) --no-print-directory browser

bench: setup peers bench-peers
	$(PY) -m tests.bench

clean:
	rm -rf $(STAMPS) build *.egg-info
