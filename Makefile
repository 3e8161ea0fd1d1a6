# Switchboard: `make run` starts the server, `make test` passes the tests, `make bench` prints
# the figures. Each sets up what it needs (system packages as root, the Python venv).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
CONFIG ?=
PYTEST_ARGS ?=
# make run DOMAIN=meet.example.org [EMAIL=ops@example.org] [PUBLIC_IP=203.0.113.7]: a server on
# the internet (HTTPS from ACME on 443 and 80, SIP 5060, media on the host's address); its
# configuration is written once to data/server.toml (switchboard server-config), then edited.
DOMAIN ?=
EMAIL ?=
PUBLIC_IP ?=
PREFIX ?= /opt/switchboard
SERVER_CONFIG := data/server.toml
# make run NODES=auto (one per core) or NODES=3 [CONFIG=base.toml] [PUBLIC_HOST=name]: several
# nodes on this machine as one cluster (switchboard nodes: Redis and PostgreSQL under
# data/cluster, node i on each configured port + 10 * i); docs/deploy.md.
NODES ?=
PUBLIC_HOST ?=

.PHONY: run test bench setup system cluster-system peers bench-peers venv dev lint typecheck unit integration browser install-service clean

run: setup $(if $(NODES),cluster-system)
ifneq ($(NODES),)
	@test -z '$(DOMAIN)' || { echo 'make run: NODES with DOMAIN is not supported (ACME gives one certificate per host): see docs/deploy.md' >&2; exit 2; }
	$(VENV)/bin/switchboard nodes --count '$(NODES)' --dir data/cluster $(if $(CONFIG),--config $(CONFIG)) \
	    $(if $(PUBLIC_HOST),--public-host '$(PUBLIC_HOST)')
else ifneq ($(DOMAIN),)
	@mkdir -p data
	test -e $(SERVER_CONFIG) || { $(VENV)/bin/switchboard server-config --domain '$(DOMAIN)' \
	    --email '$(EMAIL)' --public-ip '$(PUBLIC_IP)' --data-dir ./data > $(SERVER_CONFIG).new \
	    && mv $(SERVER_CONFIG).new $(SERVER_CONFIG); }
	$(VENV)/bin/switchboard serve --config $(if $(CONFIG),$(CONFIG),$(SERVER_CONFIG))
else
	$(VENV)/bin/switchboard serve $(if $(CONFIG),--config $(CONFIG))
endif

# Only what running needs: the system packages and the project (no test or bench tools).
setup: system venv

system: $(STAMPS)/system
$(STAMPS)/system: scripts/install-system.sh
	bash scripts/install-system.sh
	@mkdir -p $(STAMPS) && touch $@

# Redis and PostgreSQL, only for `make run NODES=...` (the tests' come with `peers`).
cluster-system: $(STAMPS)/cluster-system
$(STAMPS)/cluster-system: scripts/install-cluster.sh
	bash scripts/install-cluster.sh
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
$(STAMPS)/venv: pyproject.toml setup.py $(wildcard native/*.c native/*.h native/*.py gateway/*.py gateway/media/*.py gateway/*.pxd gateway/media/*.pxd bridge/fanout.py bridge/rtcp_feedback.py bridge/*.pxd) $(STAMPS)/system
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	@mkdir -p $(STAMPS) && touch $@

# The development tools (pytest, mypy, ruff, playwright, pesq) on top, for test and bench.
dev: $(STAMPS)/dev
$(STAMPS)/dev: $(STAMPS)/venv pyproject.toml
	$(PY) -m pip install -q -e '.[dev]'
	@mkdir -p $(STAMPS) && touch $@

# As root: the project in its own venv under PREFIX, a system user, the configuration in
# /etc/switchboard (written once), the systemd unit (deploy/switchboard.service) started.
install-service: system
	@test -n '$(DOMAIN)' || { echo 'make install-service needs DOMAIN=your.server.name' >&2; exit 2; }
	test -x $(PREFIX)/bin/python || python3 -m venv $(PREFIX)
	$(PREFIX)/bin/python -m pip install -q --upgrade pip
	$(PREFIX)/bin/python -m pip install -q .
	mkdir -p $(PREFIX)/share/doc/switchboard && cp docs/deploy.md $(PREFIX)/share/doc/switchboard/
	id -u switchboard >/dev/null 2>&1 || useradd --system --home-dir /var/lib/switchboard \
	    --no-create-home --shell /usr/sbin/nologin switchboard
	install -d -m 0755 /etc/switchboard
	test -e /etc/switchboard/switchboard.toml || { $(PREFIX)/bin/switchboard server-config \
	    --domain '$(DOMAIN)' --email '$(EMAIL)' --public-ip '$(PUBLIC_IP)' \
	    --data-dir /var/lib/switchboard > /etc/switchboard/switchboard.toml.new \
	    && mv /etc/switchboard/switchboard.toml.new /etc/switchboard/switchboard.toml; }
	$(PREFIX)/bin/switchboard check-config /etc/switchboard/switchboard.toml
	sed -e 's#@PREFIX@#$(PREFIX)#g' -e 's#@CONFIG@#/etc/switchboard/switchboard.toml#g' \
	    deploy/switchboard.service > /etc/systemd/system/switchboard.service
	systemd-analyze verify /etc/systemd/system/switchboard.service
	if [ -d /run/systemd/system ]; then systemctl daemon-reload && \
	    systemctl enable --now switchboard && systemctl --no-pager status switchboard; \
	else echo 'systemd is not running here: start it with systemctl enable --now switchboard'; fi

lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

unit: dev
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

integration: setup dev peers
	$(VENV)/bin/pytest -q tests/integration $(PYTEST_ARGS)

# Browser tests: the server and headless Chromium in a network namespace with only loopback.
browser: setup dev peers
	unshare -n -- bash -c 'ip link set lo up && $(VENV)/bin/pytest -q tests/browser $(PYTEST_ARGS)'

test: setup dev peers lint
	$(VENV)/bin/pytest -q tests --ignore=tests/browser $(PYTEST_ARGS)
	$(MAKE) --no-print-directory browser

bench: setup dev peers bench-peers
	$(PY) -m tests.bench

clean:
	rm -rf $(STAMPS) build *.egg-info
