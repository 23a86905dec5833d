# edgewatch — every target sets up what it needs the first time and skips what is already there.
# `make help` lists the targets (from the `## ` comments below).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
VENDOR := web/vendor
# Debian packages the tests and benchmarks start for real (installed with apt-get when run as root).
DEB_PACKAGES ?=
# the interop tests (tests/aggregator/test_interop.py, test_alertmanager.py); shellcheck for install-agent.sh
TEST_PACKAGES := prometheus prometheus-alertmanager victoria-metrics shellcheck

.PHONY: help setup demo test lint format bench bench-protocol bench-agent bench-aggregator bench-alerts bench-commands bench-ui soak lock dist system clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(STAMP) $(VENDOR)/uPlot.esm.js system ## create .venv, install edgewatch and its pinned dependencies, npm and Debian packages

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "edgewatch needs Python 3.11 or newer; install python3.11 (or set PYTHON=...) and run make again")'
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || $(MAKE) --no-print-directory system DEB_PACKAGES=python3-venv
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt -e '.[all,dev]'
	@touch $@

$(VENDOR)/uPlot.esm.js: web/package.json web/package-lock.json
	@command -v npm >/dev/null || $(MAKE) --no-print-directory system DEB_PACKAGES=npm
	npm ci --prefix web --no-audit --no-fund --ignore-scripts --loglevel=error
	@mkdir -p $(VENDOR)
	cp web/node_modules/uplot/dist/uPlot.esm.js web/node_modules/uplot/dist/uPlot.min.css $(VENDOR)/

system: ## install the Debian packages in DEB_PACKAGES that are missing (apt-get, as root)
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "make: missing Debian packages:$$missing; run 'sudo apt-get install$$missing' or make as root" >&2; exit 1; fi; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing

demo: setup ## run the aggregator, this host's agent and 20 simulated hosts; prints the URL and login
	$(VENV)/bin/edgewatch demo

test: setup lint ## run every test (lint first, then pytest; installs the Debian packages the browser and interop tests start)
	@$(MAKE) --no-print-directory system DEB_PACKAGES="chromium $(TEST_PACKAGES)"
	$(PY) -m pytest -q

RUFF := $(VENV)/bin/ruff --config .ci/ruff.toml

lint: $(STAMP) ## ruff and mypy (strict for protocol/)
	$(RUFF) check .
	$(RUFF) format --check .
	@mkdir -p build/typecheck/edgewatch
	@for side in agent aggregator protocol web; do ln -sfn ../../../$$side build/typecheck/edgewatch/$$side; done
	$(PY) -m mypy
	$(PY) -m mypy --strict -p edgewatch.protocol

format: $(STAMP) ## reformat the code with ruff
	$(RUFF) format .
	$(RUFF) check --fix .

bench: bench-protocol bench-agent bench-aggregator bench-alerts bench-commands bench-ui ## run every benchmark (JSON lines on stdout)

bench-protocol: $(STAMP) ## wire protocol: frame bytes and encode+decode time per sample, beside JSON and msgpack
	$(PY) bench/protocol.py

bench-agent: $(STAMP) ## agent RSS and CPU at a 1 s interval for 60 s, beside Debian's node_exporter
	@$(MAKE) --no-print-directory system DEB_PACKAGES=prometheus-node-exporter
	$(PY) bench/agent.py

bench-aggregator: $(STAMP) ## aggregator: ingest over HTTP, bytes/sample beside VictoriaMetrics, queries (ARGS=--quick)
	@$(MAKE) --no-print-directory system DEB_PACKAGES=victoria-metrics
	$(PY) bench/aggregator.py $(ARGS)

bench-alerts: $(STAMP) ## alerts: sample-to-webhook/push latency with a real agent, rule cost at 1,000 hosts (ARGS=--quick)
	$(PY) bench/alerts.py $(ARGS)

bench-commands: $(STAMP) ## remote commands: issued to result stored, real agent with default settings (ARGS=--quick)
	$(PY) bench/commands.py $(ARGS)

soak: $(STAMP) ## the fault, load and security suite, full length (hours; ARGS="--only 3,5" or --fast): JSON and a table
	$(PY) -m tests.soak $(ARGS)

bench-ui: $(STAMP) $(VENDOR)/uPlot.esm.js ## web UI in headless Chromium: 1,000-host overview and a host's 24 h charts, API vs render ms (ARGS=--quick)
	@$(MAKE) --no-print-directory system DEB_PACKAGES=chromium
	$(PY) bench/ui.py $(ARGS)

dist: $(STAMP) $(VENDOR)/uPlot.esm.js ## build the wheel and sdist into dist/ (web UI, units, install script included)
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .
	@ls -l dist

lock: $(STAMP) ## re-pin constraints.txt to what the venv has installed now (setuptools and wheel too: make dist builds offline)
	$(PIP) freeze --all --exclude-editable --disable-pip-version-check | grep -v -E '^(edgewatch|pip)==' > constraints.txt

clean: ## remove the venv, caches and fetched web packages
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis web/node_modules $(VENDOR)
