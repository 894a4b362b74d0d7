# `make test` is the whole set-up: it builds .venv when it is missing or
# older than pyproject.toml, then lints, type-checks and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test

.PHONY: test lint typecheck pytest clean

test: lint typecheck pytest

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev,uvloop]'
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy --strict aiosock tests
	# To mypy, benchmarks/codecs.py is a top-level "codecs" that shadows the
	# standard library's, so it gets a run and a cache of its own.
	$(PY) -m mypy --strict --cache-dir .mypy_cache/benchmarks benchmarks

pytest: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
