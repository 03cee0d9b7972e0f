# edgesplit: `make demo` and `make test` set everything up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench unit clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first (CPU build from local disk): otherwise stable-baselines3 pulls a CUDA torch of several GB.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	@if [ -x scripts/fetch-helm.sh ]; then scripts/fetch-helm.sh; fi
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/edgesplit demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# PYTHONFAULTHANDLER: a native crash after pytest's own handler is gone (interpreter shutdown: one
# fresh-clone run of 2026-12-01 ended "Aborted" after 987 passed) still prints every thread's stack
test: setup lint
	PYTHONFAULTHANDLER=1 $(BIN)/pytest -q

unit: setup
	$(BIN)/pytest -q tests/unit

bench: setup
	$(BIN)/edgesplit bench all --json

clean:
	rm -rf $(VENV) tools .pytest_cache .mypy_cache .ruff_cache
