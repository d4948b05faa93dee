# Two commands on a fresh machine: `make rehearse` and `make test`. Each makes .venv itself;
# `make setup` only makes it (to deploy: .venv/bin/python -m migrations / -m verification).
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
READY       := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup rehearse test lint bench clean

$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(READY)  ## .venv with the kit installed, nothing else (then: .venv/bin/python -m migrations ...)

rehearse: $(READY)  ## the whole deployment plan on throwaway databases
	$(PY) -m migrations.rehearse

test: $(READY) lint  ## lint, then the project's own tests on throwaway databases
	$(PY) -m pytest -n 3 $(PYTEST_ARGS)

lint: $(READY)  ## ruff and mypy on the code, squawk on the SQL that upgrade runs
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m migrations plan --all | $(VENV)/bin/squawk --config .squawk.toml --stdin-filepath migrations-plan.sql

bench: $(READY)  ## figures and ratios on generated data (1,000,000 stocks); minutes, not seconds
	$(PY) -m bench

clean:  ## tools and caches only: never data/ (the backups) nor reports/ (the deployment record)
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache
