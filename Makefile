# Two commands do everything: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint typecheck unit install bench-baselines clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The bundled ML-100K demo data ships in the recbole wheel; install it without its
# dependencies (they would pull an unpinned torch) and never import the module.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet --no-deps "recbole==1.2.1"
	$(BIN)/pip install --quiet -e ".[semantic]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[semantic,dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/recsage quickstart

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy src/recsage

unit: $(VENV)/.installed-dev
	$(BIN)/pytest

test: lint typecheck unit

bench-baselines: $(VENV)/.installed
	$(BIN)/python benchmarks/baselines.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
