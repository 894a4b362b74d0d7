# `make test` is the whole set-up: it builds .venv when it is missing or
# older than pyproject.toml, then lints, type-checks and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench
MUTANTS_STAMP := $(VENV)/.installed-mutants

.PHONY: test lint typecheck pytest bench mutants clean

test: lint typecheck pytest

$(STAMP): EXTRAS := test,dev,uvloop
$(BENCH_STAMP): EXTRAS := bench,uvloop
$(MUTANTS_STAMP): EXTRAS := test,uvloop,mutants
$(STAMP) $(BENCH_STAMP) $(MUTANTS_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy --strict aiosock tests benchmarks examples

pytest: $(STAMP)
	$(PY) -m pytest

# The main job: every echo server under the same load, side by side.
bench: $(BENCH_STAMP)
	$(PY) -m benchmarks.run --quick

# Mutation testing (not in CI: about an hour on two cores). mutmut mutates
# what [tool.mutmut] in pyproject.toml names, runs for each mutant only the
# tests that reach the mutated function, then .ci/mutants.py prints the
# score per module and every survivor not listed as equivalent.
mutants: $(MUTANTS_STAMP)
	$(PY) -m mutmut run --max-children 2
	$(PY) .ci/mutants.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis \
		benchmarks/build mutants
