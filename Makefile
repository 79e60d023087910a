# The documented entry points. Each target sets up what it needs on a fresh machine:
# a pinned uv in .tools/, then the locked environment in .venv/.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
DEMO_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help demo test lint bench services clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --quiet
	@touch $@

demo: $(VENV)/.synced ## run the main job on the embedded default (no servers needed)
	$(BIN)/txguard demo $(DEMO_ARGS)

services: ## check (and start, if down) the local Redis and PostgreSQL the tests use
	@bash .ci/services

lint: $(VENV)/.synced ## ruff, mypy (strict on the core) and the import layering contract
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/txguard
	$(BIN)/lint-imports

test: $(VENV)/.synced services ## lint, then every test against the real Redis and PostgreSQL
	@bash .ci/browser
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest

bench: $(VENV)/.synced services ## run the benchmark scripts and print their figures
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean: ## remove the environment and the embedded default's data
	rm -rf $(VENV) $(TOOLS) .txguard .pytest_cache .mypy_cache .ruff_cache
