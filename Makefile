# Fresh machine: only python3 is needed; each target sets up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo lint test test-fast bench bench-quick clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,report,ml]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m replay.demo --out demo-output
	$(BIN)/python -m rendezvous.demo --out demo-output/live

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --timeout 900

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

$(VENV)/.bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(VENV)/.bench

bench: $(VENV)/.bench
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.live

bench-quick: $(VENV)/.bench
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) demo-output *.egg-info
