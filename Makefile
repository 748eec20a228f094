# Two commands on a fresh machine: `make demo` and `make test`; both set themselves up.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast test-postgres dev mlflow serve lint format bench clean reset

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	$(BIN)/python -m pip install --quiet -e '.[dev]' 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

demo: $(STAMP) ## replay both declared systems through the sensors and automation on the embedded default (.mlsys/)
	$(BIN)/mlsys demo --system flights
	$(BIN)/mlsys demo --system traffic

test: $(STAMP) ## run the whole test suite, slow end-to-end tests included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## the test suite without the slow end-to-end tests
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-postgres: $(STAMP) ## the PostgreSQL profile's tests (they start a throwaway server; need initdb/pg_ctl)
	$(BIN)/python -m pytest mlsys_tests/test_postgres.py $(PYTEST_ARGS)

dev: $(STAMP) ## the Dagster UI on http://127.0.0.1:3000 over the same state as the demo
	$(BIN)/mlsys dev

mlflow: $(STAMP) ## the MLflow UI on http://127.0.0.1:5000 over the embedded store
	$(BIN)/mlsys mlflow

serve: $(STAMP) ## every declared system's champion over HTTP on http://127.0.0.1:5001 (POST /invocations, /<system>/invocations)
	$(BIN)/mlsys serve

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .

format: $(STAMP) ## ruff's fixes and formatting of imports
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## benchmarks (not part of make test): ratios against in-run baselines, benchmarks/RESULTS.md
	$(BIN)/python -m benchmarks

reset: ## delete all state (MLSYS_HOME, .mlsys by default)
	rm -rf "$${MLSYS_HOME:-.mlsys}"

clean: reset ## delete state and the virtual environment
	rm -rf $(VENV) *.egg-info
