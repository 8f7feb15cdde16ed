# One entry point per job. Each target sets up what is missing first (scripts/setup.sh is
# idempotent: a second call checks a stamp and starts in seconds).
VENV := .venv
BIN := $(VENV)/bin
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db

.PHONY: help setup demo test test-fast lint lock ui doctor clean
.DEFAULT_GOAL := help

## make help: list the targets
help:
	@sed -n 's/^## make //p' $(MAKEFILE_LIST) | awk -F': ' '{printf "  make %-10s %s\n", $$1, $$2}'

## make setup: create .venv and install the pinned packages and espeak-ng (idempotent)
setup:
	@bash scripts/setup.sh

## make demo: set up, then run the default pipeline (dvc repro) on the embedded corpus
demo: setup
	@$(BIN)/smx config validate params.yaml
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@sed -n '/^## What the numbers show/,/^## Pre-training/p' reports/report.md | sed '$$d'
	@echo "[demo] the report: reports/report.md (figures in reports/figures/, benchmark in reports/bench/)"
	@echo "[demo] outputs: corpus data/, configs resolved/<variant>/, encoders models/<variant>/, metrics/ and plots/"
	@echo "[demo]          (dvc metrics show; dvc plots show), checkpoints ray_results/"
	@echo "[demo] compare the runs in MLflow: make ui   (then open http://127.0.0.1:5000)"
	@echo "[demo] each encoder is a registered MLflow model: models:/smx-<variant>@latest (see models/<variant>/registry.json)"

# Tests run in 2 worker processes (pytest-xdist; tests/conftest.py says which tests share one),
# each with single-threaded torch so that together they do not oversubscribe 2 cores.
PYTEST := PATH="$(CURDIR)/$(BIN):$$PATH" OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2

## make test: set up, then run every test (unit and end-to-end)
test: setup
	@$(PYTEST) --durations=20

## make test-fast: set up, then the tests that start no Ray, no server and no end-to-end run
test-fast: setup
	@$(PYTEST) -m "not e2e and not ray and not server"

## make lint: ruff check and ruff format --check (what CI and pre-commit run)
lint: setup
	@$(BIN)/ruff check . && $(BIN)/ruff format --check .

## make lock: re-resolve requirements.lock after changing pyproject.toml
lock: setup
	@$(BIN)/pip freeze --exclude-editable | grep -v -E '^(smx|pip|setuptools|wheel)==' \
	  | { echo "# Lock file: the exact versions a fresh install resolves (pip install -c requirements.lock -e '.[dev,test-speechbrain]')."; \
	      echo "# Regenerate with 'make lock' after changing pyproject.toml."; cat; } > requirements.lock

## make ui: the MLflow UI on http://127.0.0.1:5000 over the project's tracking store
ui: setup
	$(BIN)/mlflow ui --backend-store-uri "$(MLFLOW_TRACKING_URI)" --host 127.0.0.1 --port 5000

## make doctor: check torch, Ray, MLflow, DVC, espeak-ng and disk (smx doctor)
doctor: setup
	@$(BIN)/smx doctor

## make clean: remove .venv and the tool caches
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
