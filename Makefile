# The README's two commands are `make demo` and `make test`; each makes .venv when
# it is missing and installs the project into it first. `make demo` (and `make bench`)
# install what mangostore needs to run; only the targets that check the code install
# the development tools too.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The extras a user gets from `make demo`: semantic search in the demo's graph, and
# the sync server and HTTP API the demo starts on loopback.
RUNTIME_EXTRAS := embeddings,server
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("mangostore needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[$(RUNTIME_EXTRAS)]'
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,$(RUNTIME_EXTRAS)]'
	touch $(DEV_STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/mangostore demo

test: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -n auto --dist worksteal --cov --cov-report=term

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

bench: $(RUNTIME_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
