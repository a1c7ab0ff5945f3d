# One-word commands. Every target creates/updates .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup browser run test test-fast lint demo bench clean

setup:
	@bash scripts/bootstrap.sh

## Chat in the browser: ingests demo/corpus (incremental) and serves http://127.0.0.1:7860
run: setup
	@$(VENV)/bin/rag-app serve --ingest demo/corpus

## Debian's Chromium for the headless browser test (installed when missing).
browser:
	@bash scripts/ensure-browser.sh

## Run the whole test suite (what CI runs): tests/ and the notebooks (nbmake).
test: setup browser
	@$(PY) -m pytest --nbmake $(PYTEST_ARGS)

## Unit tests only (no model, no server, no notebooks, no browser), one worker per core.
test-fast: setup
	@$(PY) -m pytest -m "not slow" -n auto --dist worksteal $(PYTEST_ARGS)

lint: setup
	@$(VENV)/bin/ruff check rag_app tests bench
	@$(VENV)/bin/ruff format --check rag_app tests bench
	@$(VENV)/bin/mypy

## Ingest the demo corpus and query it as two different users.
demo: setup
	@bash scripts/demo.sh

bench: setup
	@$(PY) bench/bench_foundation.py

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
