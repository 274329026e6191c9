# AgentTrader backend. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help setup run test lint format bench chaos clean plan deploy

PROJECT ?=
REGION ?=
DEPLOY_ARGS ?=
define need_target
	@test -n "$(PROJECT)" && test -n "$(REGION)" || { echo "usage: make $@ PROJECT=my-project REGION=us-central1 [DEPLOY_ARGS='--schedule \"*/2 * * * *\"']" >&2; exit 2; }
endef

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

NODE_STAMP := node_modules/.installed

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

setup: $(STAMP) $(NODE_STAMP) ## Install everything into .venv and node_modules (idempotent)

run: setup ## Run the local stack with demo tenants until Ctrl-C
	$(PY) -m devtools.localstack

test: setup lint ## Lint, then run every test (starts and stops the emulators it needs)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup ## ruff (lint + format check), mypy strict on all that ships, import-layer contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache --no-logo

PUBLISHER_TENANTS ?= 100000

bench: setup ## Benchmarks: each figure beside its baseline and goal (machine must be quiet)
	$(PY) -m benchmarks.pipeline $(BENCH_ARGS)
	$(PY) -m benchmarks.publisher_scale --tenants $(PUBLISHER_TENANTS)
	$(PY) -m benchmarks.cost

plan: setup ## Print the production deployment plan (PROJECT=… REGION=…; needs no credentials)
	$(need_target)
	$(PY) -m infra plan --project "$(PROJECT)" --region "$(REGION)" $(DEPLOY_ARGS)

deploy: setup ## Plan, then apply, the production deployment (PROJECT=… REGION=…)
	$(need_target)
	$(PY) -m infra plan --project "$(PROJECT)" --region "$(REGION)" $(DEPLOY_ARGS)
	$(PY) -m infra apply --project "$(PROJECT)" --region "$(REGION)" $(DEPLOY_ARGS)

chaos: setup ## Fault-injection suite: one pulse over 300 tenants under faults, invariants checked
	$(PY) -m chaos.run --tenants 300 $(CHAOS_ARGS)

format: setup ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache *.egg-info
