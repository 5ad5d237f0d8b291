# syncsite — the commands the README and docs/ name. Everything runs from .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The venv is (re)installed whenever requirements.lock changes (`make lock` writes it).
STAMP := $(VENV)/.installed-$(shell cksum < requirements.lock | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup lock lock-check test test-postgres lint mypy bench demo migrate serve clean browser-deps mutate mutate-clean screenshots

setup: $(STAMP)

$(STAMP): requirements.lock
	@if [ ! -x $(BIN)/python ]; then \
	  $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	    echo "python3 -m venv failed; installing python3-venv (needs root)"; \
	    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }; \
	fi
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

# requirements.txt (runtime) and requirements-dev.txt (tests, lint, tools) name what we use;
# requirements.lock pins every package they pull in, for Python 3.11+ on any platform.
# Existing pins are kept; `make lock LOCK_ARGS=--upgrade` moves everything to the newest allowed,
# `LOCK_ARGS="--upgrade-package httpx"` one package. Then `make setup` installs the new lock.
LOCK_ARGS ?=
LOCK := $(BIN)/uv pip compile --quiet --python-version 3.11 --universal --custom-compile-command "make lock"
lock: setup
	$(LOCK) $(LOCK_ARGS) requirements-dev.txt -o requirements.lock

# Fails when requirements*.txt changed without `make lock` (needs the package index, as `make setup` does; CI runs it).
lock-check: setup
	@tmp=$$(mktemp) && cp requirements.lock $$tmp && $(LOCK) requirements-dev.txt -o $$tmp \
	  && diff -u requirements.lock $$tmp && rm -f $$tmp \
	  || { echo "requirements.lock is out of date: run 'make lock'"; rm -f $$tmp; exit 1; }

test: setup
	$(BIN)/python -m pytest

# Headless Chromium for the browser tests (tests/browser), from Debian's packages.
browser-deps:
	@if command -v chromium >/dev/null 2>&1; then echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium is missing: run 'sudo apt-get install chromium' (the browser tests skip without it)"; fi

# The suite against a private PostgreSQL on loopback (needs the Debian postgresql package).
test-postgres: setup
	.ci/services postgres-test

# ruff (rules in [tool.ruff]) and mypy with the django-stubs plugin ([tool.mypy] in pyproject.toml).
# .pre-commit-config.yaml runs the same two on each commit (`.venv/bin/pre-commit install`).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

mypy: setup
	$(BIN)/mypy

# Mutation testing of the core logic (docs/development.md, "Mutation testing"). Slow: not part of `make test` or CI.
# What is mutated and which tests run: [tool.mutmut] in pyproject.toml and tools/mutmut-coverage.toml.
# Two workers (one per core; each has its own SQLite test file), niced. mutmut keeps its results
# in mutants/ and only re-tests changed functions on the next run; `make mutate-clean` starts afresh.
# The last line printed is the JSON summary of tools/mutmut_summary.py.
MUTATE_CHILDREN ?= 2
mutate: setup
	rm -rf mutants/var && mkdir -p mutants
	env -u DATABASE_URL -u SYNCSITE_VAR_DIR COVERAGE_RCFILE=$(CURDIR)/tools/mutmut-coverage.toml \
	  nice -n 19 $(BIN)/mutmut run --max-children $(MUTATE_CHILDREN) >mutants/run.log 2>&1 \
	  || { tail -c 3000 mutants/run.log; exit 1; }
	@tail -n 2 mutants/run.log
	@$(BIN)/python tools/mutmut_summary.py

mutate-clean:
	rm -rf mutants

bench: setup
	$(BIN)/python bench/run.py

migrate: setup
	$(BIN)/python manage.py migrate --no-input

# The demo exports contain deliberately bad rows, so `runsync all` ends partial (exit 3).
demo: migrate
	$(BIN)/python manage.py makedemouser
	$(BIN)/python manage.py syncschedules
	@$(BIN)/python manage.py runsync all; code=$$?; \
	  if [ $$code -eq 3 ]; then echo "(partial is expected: the demo exports contain bad rows on purpose)"; \
	  elif [ $$code -ne 0 ]; then exit $$code; fi
	$(BIN)/python manage.py rundemo --host $(HOST) --port $(PORT)

# The docs' screenshots (docs/screenshots/*.png) from the real demo in a private temporary
# SYNCSITE_VAR_DIR: demo data, runsync all, a server on a free loopback port, headless Chromium.
screenshots: setup
	$(BIN)/python tools/screenshots.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache mutants
