# The two set-up commands: `make test` and `make demo`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install test lint demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,spark]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check denial_model tests benchmarks
	$(BIN)/ruff format --check denial_model tests benchmarks

# Two workers, a test file each at a time (module fixtures are built once per file). The
# suite is mostly CPU bound, so two workers on two cores gain about 1.25x, not 2x.
test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile

demo: $(STAMP)
	$(BIN)/python -m denial_model.demo

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_rules.py
	$(BIN)/python benchmarks/bench_simulate.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_ingest.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
