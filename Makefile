# mfa-gateway: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck pytest system-deps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## Run the gateway on embedded defaults (SQLite in .demo/, in-memory state, generated dev keys).
demo: $(STAMP)
	$(BIN)/mfa-gateway demo --data-dir .demo

## Install what the tests need, then lint, type-check and run every test.
test: system-deps lint typecheck pytest

## Debian packages the tests start real servers from (installed with apt-get when missing and run as root).
system-deps:
	@bash .ci/system-packages

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest --cov --cov-branch --cov-report=term:skip-covered $(PYTEST_ARGS)

## Benchmark, mode A: gateway vs nginx vs a minimal aiohttp proxy (about 10 min); rewrites the results in docs/performance.md.
bench: system-deps $(STAMP)
	$(BIN)/python bench/run.py --out docs/performance.md

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache .coverage
