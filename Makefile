# The two commands: `make run` (the service, with embedded PostgreSQL/Valkey/Ray when no URLs are set)
# and `make test` (lint, types, the whole suite). Each creates .venv and installs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/whatsapp-bridge

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks (tests/benchmarks/README.md): every one at full size, or one of them with its options, e.g.
# `make bench BENCH_ARGS="memory --sizes 10 --idle-s 10"`; `BENCH_ARGS=--quick` runs all at trial size.
bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
