# mfa-gateway: the two set-up commands are `make demo` and `make test` (`make test-fast` while you work).
# Installs come from the hashed lock in requirements/ (see README, "Locked installs"), so they work the same next month.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements/dev.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
# JavaScript the tests inject (axe-core), from package-lock.json; `npm ci` replaces node_modules/ as the lock says.
JS_STAMP := node_modules/.installed-$(shell cat package.json package-lock.json | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes --no-header

.PHONY: demo test test-fast lint typecheck pytest system-deps js-deps lock test-latest bench clean

$(STAMP): pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	$(BIN)/pip check
	touch $(STAMP)

PORT ?= 9090
APP_PORT ?= 9091

## Run the gateway on embedded defaults (SQLite in .demo/, in-memory state, generated dev keys); other ports with
## `make demo PORT=8090 APP_PORT=8091`.
demo: $(STAMP)
	$(BIN)/mfa-gateway demo --data-dir .demo --port $(PORT) --app-port $(APP_PORT)

## Install what the tests need, then lint, type-check and run every test.
test: system-deps js-deps lint typecheck pytest

## While you work, not instead of `make test`: unit tests and the port contracts on their in-memory and SQLite
## implementations (the `redis` and `postgres` ones are left out), so no Debian package and no server; under a minute.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "(unit or contract) and not redis and not postgres" tests/unit tests/contracts $(PYTEST_ARGS)

$(JS_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	touch $(JS_STAMP)

## axe-core for the browser test's accessibility check, installed from the lock (nothing is fetched at test time).
js-deps: $(JS_STAMP)

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

## Refresh the lock on purpose: the newest versions pyproject.toml's ranges allow, with their hashes.
lock: $(STAMP)
	$(UV_COMPILE) --upgrade pyproject.toml requirements/tools.in --extra test -o requirements/dev.txt
	$(UV_COMPILE) pyproject.toml --constraint requirements/dev.txt -o requirements/runtime.txt
	$(UV_COMPILE) requirements/build.in --constraint requirements/dev.txt -o requirements/build.txt

## Not part of CI: lint, type-check and test against the newest versions the ranges allow, and say what moved.
test-latest: system-deps
	bash scripts/test-latest

## Benchmark: gateway vs nginx vs a minimal aiohttp proxy, modes A and B, fixed-rate latency (U1), a 3-minute soak (S7)
## and every target's verdict (about 22 min); rewrites the results in docs/performance.md.
bench: system-deps $(STAMP)
	$(BIN)/python bench/run.py --out docs/performance.md

clean:
	rm -rf $(VENV) .venv-latest .demo node_modules .mypy_cache .ruff_cache .pytest_cache .coverage
