# moltsim — `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SCENARIO ?= scenarios/default.toml
SOAK_MINUTES ?= 30

.DEFAULT_GOAL := help

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,local]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install moltsim with its test tools
	@true

run: $(STAMP) ## run the default scenario (embedded broker, SQLite run file, offline brain)
	$(VENV)/bin/moltsim run $(SCENARIO)
	@echo "(moltsim is in $(VENV)/bin: '. $(VENV)/bin/activate' puts it on your PATH)"

run-llm: $(STAMP) ## a few agents on a local 1.5B model (fetched once, ~1.1 GB; no key, no server)
	$(VENV)/bin/moltsim run scenarios/llm-local.toml
	@echo "(moltsim is in $(VENV)/bin: '. $(VENV)/bin/activate' puts it on your PATH)"

watch: $(STAMP) ## watch a run live, read-only: make watch RUN=runs/<run folder>
	@test -n "$(RUN)" || { echo "usage: make watch RUN=runs/<run folder or run.db>"; exit 2; }
	$(VENV)/bin/moltsim watch $(RUN)

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP) ## mypy --strict
	$(VENV)/bin/mypy

pytest: $(STAMP) ## the test suite only
	$(VENV)/bin/pytest -q

test-snapshot-update: $(STAMP) ## rewrite the watcher's screen snapshots after a deliberate change
	MOLTSIM_SNAPSHOT_UPDATE=1 $(VENV)/bin/pytest -q tests/tui/test_snapshots.py

test: lint typecheck pytest ## lint, typecheck and the whole test suite

check: test ## alias of test

bench: $(STAMP) ## benchmarks; figures go to bench-results.json
	$(PY) -m bench

bench-llm: $(STAMP) ## LLM figures on the local 1.5B model (a real run, then overhead vs the raw server)
	$(PY) -m bench llm

soak: $(STAMP) ## ~1,000 agents for SOAK_MINUTES (default 30) wall minutes, then a health verdict
	$(PY) -m bench.soak --minutes $(SOAK_MINUTES)

format: $(STAMP) ## apply ruff's formatting and import order
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

.PHONY: install run run-llm bench-llm lint typecheck pytest test check bench soak format help watch test-snapshot-update
