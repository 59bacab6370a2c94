# Tooling for reconnect-lab. Every target is idempotent: run it again and it
# does only what is missing. Nothing here assumes anything installed by hand.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
# The interpreter the venv is made from (PYTHON=... overrides): the distribution's python3 when
# it is 3.11+ with venv, else the first python3 on PATH. Debian's is a static build with
# profile-guided optimisation and LTO; a build without them (pyenv's default: shared libpython,
# no PGO/LTO) runs the service's reconnect storm with more CPU per attempt (README, "Measured").
SYSTEM_PYTHON := /usr/bin/python3
PYTHON ?= $(shell $(SYSTEM_PYTHON) -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' \
	>/dev/null 2>&1 && echo $(SYSTEM_PYTHON) || echo python3)
PYTEST_ARGS ?=

TOXIPROXY_VERSION := v2.12.0
TOXIPROXY_MODULE := github.com/Shopify/toxiproxy/v2
# Stamp the real version (a plain `go install` reports "git"), as releases do.
GO_INSTALL = GOBIN=$(GOBIN_DIR) GOFLAGS=-buildvcs=false \
	go install -ldflags "-X $(TOXIPROXY_MODULE).Version=$(TOXIPROXY_VERSION:v%=%)"
TOOLS_BIN := $(abspath tools/bin)
GOBIN_DIR := $(abspath tools/.gobin)
TOXIPROXY_SERVER_BIN := $(TOOLS_BIN)/toxiproxy-server
TOXIPROXY_CLI_BIN := $(TOOLS_BIN)/toxiproxy-cli

# apt needs root; use sudo only when we are not root already.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := redis-server libmagic1

TEST_ENV := PATH="$(TOOLS_BIN):$$PATH" TOXIPROXY_SERVER="$(TOXIPROXY_SERVER_BIN)"
NODE_GATEWAY := examples/baileys-style-gateway
# How many busy loops `make test-chaos-busy` runs beside the chaos tests (one per core).
BUSY_LOOPS ?= $(shell nproc 2>/dev/null || echo 2)
QUICK_MARKERS := not integration and not chaos and not slow and not benchmark

.PHONY: help venv tools apt-tools toxiproxy node-gateway sim test test-quick test-chaos-busy bench clean distclean

help:
	@echo "make venv        create $(VENV) and install the project with the dev extra"
	@echo "make tools       install redis-server, libmagic1 (apt) and Toxiproxy $(TOXIPROXY_VERSION) into tools/bin"
	@echo "make sim         run the simulation (python -m sim)"
	@echo "make test        run the whole suite (PYTEST_ARGS=... to pass options/paths)"
	@echo "make test-quick  unit-level tests only (no servers, no benchmarks), the shell's first, stopping at the first failure"
	@echo "make test-chaos-busy  the chaos tests (marker chaos) with every core kept busy by other processes"
	@echo "make node-gateway     npm ci of the Node.js example gateway ($(NODE_GATEWAY))"
	@echo "make bench       run tests/bench with timing enabled"
	@echo "make clean       remove caches, build output and $(VENV)"
	@echo "make distclean   clean, and remove tools/bin and tools/.gobin"

venv: $(VENV)/.installed

# Reinstall only when pyproject.toml changed since the last successful install.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

tools: apt-tools toxiproxy node-gateway

apt-tools:
	@if command -v redis-server >/dev/null 2>&1 && { ldconfig -p 2>/dev/null || /sbin/ldconfig -p; } | grep 'libmagic\.so\.1' >/dev/null; then \
		echo "apt tools present: $$(redis-server --version | cut -d' ' -f1-3)"; \
	else \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PACKAGES); \
	fi

toxiproxy: $(TOXIPROXY_SERVER_BIN) $(TOXIPROXY_CLI_BIN)

# `go install` names the binaries after their package dirs (server, cli);
# build into a private GOBIN, then rename into tools/bin.
$(TOXIPROXY_SERVER_BIN):
	@command -v go >/dev/null 2>&1 || { echo "go not found on PATH: needed to build Toxiproxy" >&2; exit 1; }
	@mkdir -p $(TOOLS_BIN) $(GOBIN_DIR)
	$(GO_INSTALL) $(TOXIPROXY_MODULE)/cmd/server@$(TOXIPROXY_VERSION)
	mv -f $(GOBIN_DIR)/server $@

$(TOXIPROXY_CLI_BIN):
	@command -v go >/dev/null 2>&1 || { echo "go not found on PATH: needed to build Toxiproxy" >&2; exit 1; }
	@mkdir -p $(TOOLS_BIN) $(GOBIN_DIR)
	$(GO_INSTALL) $(TOXIPROXY_MODULE)/cmd/cli@$(TOXIPROXY_VERSION)
	mv -f $(GOBIN_DIR)/cli $@

# The Node.js example gateway's pinned dependencies (package-lock.json), again only when it changed.
node-gateway: $(NODE_GATEWAY)/node_modules/.installed

$(NODE_GATEWAY)/node_modules/.installed: $(NODE_GATEWAY)/package-lock.json $(NODE_GATEWAY)/package.json
	@command -v node >/dev/null 2>&1 || { echo "node not found on PATH: needed for $(NODE_GATEWAY) (Node.js >= 20)" >&2; exit 1; }
	cd $(NODE_GATEWAY) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

sim: venv
	$(PY) -m sim

test: venv tools
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

test-quick: venv
	$(PY) -m pytest -m "$(QUICK_MARKERS)" --exitfirst $(PYTEST_ARGS)

# The chaos tests while every core is kept busy by another process: busy loops started
# here, stopped by their PIDs whatever the tests' outcome.
test-chaos-busy: venv tools
	@pids=""; for i in $$(seq 1 $(BUSY_LOOPS)); do \
		{ exec $(PYTHON) -c 'while True: pass'; } & pids="$$pids $$!"; \
	done; \
	trap 'kill $$pids 2>/dev/null; exit 130' INT TERM; \
	echo "busy loops (PIDs$$pids) keep $(BUSY_LOOPS) core(s) busy"; \
	status=0; $(TEST_ENV) $(PY) -m pytest -m chaos $(PYTEST_ARGS) || status=$$?; \
	kill $$pids 2>/dev/null; wait $$pids 2>/dev/null || true; \
	exit $$status

# `make bench PYTEST_ARGS='tests/bench/test_x.py'` runs that file alone; options alone (-k ...) run all of tests/bench
bench: venv tools
	$(TEST_ENV) $(PY) -m pytest $(if $(filter tests/%,$(PYTEST_ARGS)),,tests/bench) --benchmark-enable $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .benchmarks build dist *.egg-info
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf tools/bin tools/.gobin
