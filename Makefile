# AgentTrader backend. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
LOCK_ARGS ?=
# uv works with the venv's interpreter only; it never fetches a Python of its own.
export UV_PYTHON_DOWNLOADS := never

.PHONY: help setup browser lock run test unit lint format bench chaos clean plan deploy

PROJECT ?=
REGION ?=
DEPLOY_ARGS ?=
define need_target
	@test -n "$(PROJECT)" && test -n "$(REGION)" || { echo "usage: make $@ PROJECT=my-project REGION=us-central1 [DEPLOY_ARGS='--schedule \"*/2 * * * *\"']" >&2; exit 2; }
endef

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

NODE_STAMP := node_modules/.installed

# uv's pin and hashes, read from uv.lock: pip's one job is to install uv, hash-checked.
UV_PIN = $(PYTHON) -c 'import tomllib; p = [p for p in tomllib.load(open("uv.lock", "rb"))["package"] if p["name"] == "uv"][0]; print("uv==" + p["version"], *["--hash=" + f["hash"] for f in p["wheels"] + [p["sdist"]]])'

$(UV):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r <($(UV_PIN))

# Everything in uv.lock (production and dev), hash-checked; the venv ends up exactly that, plus
# the project itself, editable. --locked stops here when pyproject.toml moved past uv.lock.
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) export --quiet --locked --all-groups --no-emit-project -o $(VENV)/requirements-dev.txt
	$(UV) pip sync --quiet --python $(PY) --require-hashes $(VENV)/requirements-dev.txt
	$(UV) pip install --quiet --python $(PY) --no-deps --no-build-isolation -e .
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

# The admin console's page: its own package-lock.json (Firebase JS SDK, Chart.js, esbuild), built
# into console/web/dist, which the local stack serves and `make deploy` puts on Firebase Hosting.
CONSOLE_WEB := console/web
CONSOLE_STAMP := $(CONSOLE_WEB)/node_modules/.installed
CONSOLE_DIST := $(CONSOLE_WEB)/dist/index.html

$(CONSOLE_STAMP): $(CONSOLE_WEB)/package.json $(CONSOLE_WEB)/package-lock.json
	cd $(CONSOLE_WEB) && npm ci --no-audit --no-fund --loglevel=error
	@touch $(CONSOLE_STAMP)

$(CONSOLE_DIST): $(CONSOLE_STAMP) $(CONSOLE_WEB)/build.mjs $(wildcard $(CONSOLE_WEB)/src/*)
	cd $(CONSOLE_WEB) && node build.mjs

# Debian's chromium for the console's browser test (Playwright drives it; it never downloads a
# browser). Where it cannot be installed, setup goes on and says so; the test then skips, saying why.
browser: ## Install Debian's chromium for the console's browser test (as root, with apt-get)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
	      || { apt-get update -qq >/dev/null 2>&1 \
	           && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; }; } \
	    && echo "installed chromium (Debian) for the console's browser test" \
	    || echo "warning: apt-get could not install chromium; the console's browser test will be skipped"; \
	  else \
	    echo "warning: chromium is not installed and cannot be here (needs root and apt-get);" \
	      "the console's browser test will be skipped"; \
	  fi; }

setup: $(STAMP) $(NODE_STAMP) $(CONSOLE_DIST) browser ## Install uv.lock (hash-checked) into .venv, node_modules, chromium; build the console (idempotent)

lock: | $(UV) ## Resolve uv.lock from pyproject.toml, regenerate requirements.txt (LOCK_ARGS=--upgrade)
	$(UV) lock $(LOCK_ARGS)
	$(PY) -m infra.requirements

run: setup ## Run the local stack with demo tenants until Ctrl-C
	$(PY) -m devtools.localstack

test: setup lint ## Lint, run every test (starting the emulators), print branch coverage of what ships
	$(PY) -m pytest --cov --cov-report=term $(PYTEST_ARGS)

unit: setup ## Unit tests only: no emulators, seconds
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: setup ## ruff, mypy strict on all that ships, import-layer contracts, requirements.txt = uv.lock
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(PY) -m infra.requirements --check

PUBLISHER_TENANTS ?= 100000,1000000
STREAM_TENANTS ?= 1000

bench: setup ## Benchmarks: each figure beside its baseline and goal (machine must be quiet)
	$(PY) -m benchmarks.pipeline $(BENCH_ARGS)
	$(PY) -m benchmarks.publisher_scale --tenants $(PUBLISHER_TENANTS)
	$(PY) -m benchmarks.streams --tenants $(STREAM_TENANTS)
	$(PY) -m chaos.streams --tenants $(STREAM_TENANTS)
	$(PY) -m benchmarks.sealing
	$(PY) -m benchmarks.credentials_cpu
	$(PY) -m benchmarks.cost

plan: setup ## Print the production deployment plan (PROJECT=… REGION=…; needs no credentials)
	$(need_target)
	$(PY) -m infra plan --project "$(PROJECT)" --region "$(REGION)" $(DEPLOY_ARGS)

deploy: setup ## Plan, then apply, the production deployment (PROJECT=… REGION=…)
	$(need_target)
	$(PY) -m infra plan --project "$(PROJECT)" --region "$(REGION)" $(DEPLOY_ARGS)
	$(PY) -m infra apply --project "$(PROJECT)" --region "$(REGION)" $(DEPLOY_ARGS)

chaos: setup ## Fault injection: a pulse over 300 tenants; 1,000 streams over 3 gateways (SIGKILL, drop, flips)
	$(PY) -m chaos.run --tenants 300 $(CHAOS_ARGS)
	$(PY) -m chaos.streams --tenants $(STREAM_TENANTS)

format: setup ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache *.egg-info .coverage .coverage.*
