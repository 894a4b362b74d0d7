# `make test` is the whole set-up: it builds .venv when it is missing or
# older than pyproject.toml, then lints, type-checks and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: test lint typecheck pytest bench clean

test: lint typecheck pytest

$(STAMP): EXTRAS := test,dev,uvloop
$(BENCH_STAMP): EXTRAS := bench,uvloop
$(STAMP) $(BENCH_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy --strict aiosock tests benchmarks

pytest: $(STAMP)
	$(PY) -m pytest

# The main job: every echo server under the same load, side by side.
bench: $(BENCH_STAMP)
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis \
		benchmarks/build
