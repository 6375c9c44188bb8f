# The two commands: `make run` (the service, with embedded PostgreSQL/Valkey/Ray when no URLs are set)
# and `make test` (Chromium and systemd-analyze if missing, lint, types, the whole suite). Both install
# from uv.lock into .venv on every call (`uv sync --frozen`: a no-op when nothing changed, and it puts back the locked
# version of anything that drifted). uv itself is installed by hash from deploy/uv-requirements.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_HOME := .uv
UV := $(UV_HOME)/bin/uv
# Never download a Python (uv would, for a requires-python the machine lacks): use $(PYTHON).
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Bytecode is compiled at install (uv's --compile-bytecode) and for our own packages (compileall): with
# PYTHONDONTWRITEBYTECODE set, as on this machine, no process ever writes it, and every one (each session's
# Ray worker, each API) compiled everything it imports again. ray, fastapi, sqlalchemy, pydantic, asyncpg,
# redis and httpx imported in 2.9 s from source, 1.0 s from bytecode. A stale .pyc is never used.
SYNC = $(UV) sync --frozen --python $(PYTHON) --compile-bytecode
COMPILE = $(BIN)/python -m compileall -q -j 0 actors api kernel persistence tests

.PHONY: run dev test lint system-tools bench lock test-latest test-oldest clean

$(UV): deploy/uv-requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
	  -r deploy/uv-requirements.txt
	@touch $(UV)

# What the service needs; --inexact keeps the test tools if `make test` installed them.
run: $(UV)
	$(SYNC) --inexact --quiet
	@$(COMPILE)
	$(BIN)/whatsapp-bridge

# Exactly the lock's service + test set (anything else in .venv is removed).
dev: $(UV)
	$(SYNC) --extra dev --quiet
	@$(COMPILE)

# What the tests need from the system (Chromium, systemd-analyze): installed here when missing, or one
# line that says how (tests/system-tools.sh).
system-tools: dev
	sh tests/system-tools.sh $(BIN)

# `uv lock --check`: pyproject.toml changed without `uv lock` (or `make lock`) fails here.
lint: dev
	$(UV) lock --check --offline --quiet
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two workers by default (one per core here); each test module stays on one worker (--dist=loadfile),
# so a module's shared Ray and fixtures are started once; modules start longest first, as measured in
# tests/module_seconds.json (tests/conftest.py), not xdist's reorder. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
test: system-tools lint
	$(BIN)/python -m pytest --numprocesses=$(PYTEST_WORKERS) --dist=loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Upgrade the lock on purpose (newest versions pyproject.toml allows), and uv's own pin with it.
lock: $(UV)
	$(UV) lock --upgrade
	{ sed -n '/^#/p' deploy/uv-requirements.txt; echo uv | $(UV) pip compile --quiet --generate-hashes \
	  --no-header --python-version 3.11 -; } > deploy/uv-requirements.new
	mv deploy/uv-requirements.new deploy/uv-requirements.txt

# Drift check: the newest versions pyproject.toml allows, in a throwaway environment (not the lock),
# through the same lint and suite. A failure here is what the next `make lock` would bring.
# `make test-oldest` runs the suite with every direct dependency at its floor (are the floors true?);
# not the lint, whose rules are the locked ruff's and mypy's.
SCRATCH := $(or $(TMPDIR),/tmp)/whatsapp-bridge-unlocked
test-latest: RESOLUTION := highest
test-oldest: RESOLUTION := lowest-direct
test-latest test-oldest: $(UV)
	rm -rf $(SCRATCH) && $(UV) venv --quiet --python $(PYTHON) $(SCRATCH)
	$(UV) pip install --quiet --python $(SCRATCH)/bin/python --resolution $(RESOLUTION) -e '.[dev]'
	@echo "Not the lock's versions:"; $(UV) export --frozen --quiet --no-hashes --no-emit-project \
	  --extra dev | grep '==' | sed 's/ *;.*//' | sort > $(SCRATCH)/locked.txt
	@$(UV) pip freeze --quiet --python $(SCRATCH)/bin/python | grep '==' | sort \
	  | comm -13 $(SCRATCH)/locked.txt - | sed 's/^/  /'
	sh tests/system-tools.sh $(SCRATCH)/bin
	$(if $(filter highest,$(RESOLUTION)),$(SCRATCH)/bin/ruff check . && $(SCRATCH)/bin/ruff format --check . \
	  && $(SCRATCH)/bin/mypy)
	$(SCRATCH)/bin/python -m pytest $(PYTEST_ARGS); status=$$?; rm -rf $(SCRATCH); exit $$status

# Benchmarks (tests/benchmarks/README.md): every one at full size, or one of them with its options, e.g.
# `make bench BENCH_ARGS="memory --sizes 10 --idle-s 10"`; `BENCH_ARGS=--quick` runs all at trial size.
bench: system-tools
	$(BIN)/python -m tests.benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(UV_HOME) .pytest_cache .mypy_cache .ruff_cache
