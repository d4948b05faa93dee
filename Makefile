# Two commands on a fresh machine: `make rehearse` and `make test`. Each makes .venv itself;
# `make setup` only makes it (to deploy: .venv/bin/python -m migrations / -m verification).
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
READY       := $(VENV)/.installed
PYTEST_ARGS ?=
PG          ?=
# tests/pgserver.py: an embedded PostgreSQL of a given major version (--pg N), or the named or
# machine's server (127.0.0.1:5432), an embedded 15 standing in where none answers.
ON_SERVER   := $(PY) -m tests.pgserver
# Two test runs side by side on 2 cores: two xdist workers each.
WORKERS     ?= 2
PYTEST      := $(PY) -m pytest -n $(WORKERS) $(PYTEST_ARGS)

.PHONY: setup rehearse test test-next test-server lint bench clean

# The throwaway next change (tests/changes/next_change) tried at the head of the chain: the
# kit's generic tests cover it, US-001's own tests still verify US-001.
NEXT_CHANGE := tests.changes.next_change
# The PostgreSQL 13 leg puts the throwaway next change at the head while CHAIN holds one change;
# once a real next change is in CHAIN, that leg runs the chain as configured (production's version).
NEXT_ON_13 = $(shell python3 -c 'from migrations.changes import CHAIN; print("" if len(CHAIN) > 1 else "$(NEXT_CHANGE)")')

$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(READY)  ## .venv with the kit installed, nothing else (then: .venv/bin/python -m migrations ...)

rehearse: $(READY)  ## the whole deployment plan on throwaway databases (PG=13: on an embedded 13)
	$(ON_SERVER) $(if $(PG),--pg $(PG)) -- $(PY) -m migrations.rehearse

test: $(READY) lint  ## lint, then the tests on production's PostgreSQL 13 (with the next change at the head) and the machine's, side by side
	@echo "Tests on PostgreSQL 13 (embedded, $(or $(NEXT_ON_13),the chain as configured) at the head) and on the machine's server (the chain as configured), side by side; each one's output when it ends"
	@$(MAKE) --no-print-directory --output-sync=target --keep-going -j2 test-next test-server

test-next: export AZAK_EXTRA_CHANGES = $(NEXT_ON_13)
test-next: $(READY)  ## the tests on an embedded PostgreSQL 13 (the throwaway next change at the head while CHAIN holds one change)
	$(ON_SERVER) --pg 13 -- $(PYTEST)

test-server: $(READY)  ## the tests on the named server (PGHOST/PGPORT), else 127.0.0.1:5432, else an embedded 15
	$(ON_SERVER) -- $(PYTEST)

test-pg%: $(READY)  ## the tests on an embedded PostgreSQL % (13, 15, 18)
	$(ON_SERVER) --pg $* -- $(PYTEST)

lint: $(READY)  ## ruff and mypy on the code, squawk on the SQL that upgrade runs
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m migrations plan --all | $(VENV)/bin/squawk --config .squawk.toml --stdin-filepath migrations-plan.sql
	AZAK_EXTRA_CHANGES=$(NEXT_CHANGE) $(PY) -m migrations plan --all | $(VENV)/bin/squawk --config .squawk.toml --stdin-filepath migrations-plan.sql

bench: $(READY)  ## figures and ratios on generated data (1,000,000 stocks); minutes, not seconds
	$(PY) -m bench

clean:  ## tools and caches only: never data/ (backups, images, the deployment record) nor reports/
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache
