# Captioner: `make serve` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
DATA ?= ../shared/flickr8k

.PHONY: install serve test lint format bench reliability train evaluate clean

install: $(VENV)/.installed

# Re-runs only when pyproject.toml changes: `make install` is idempotent.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[train,dev,bulk]"
	touch $@

serve: install
	CAPTIONER_HOST=$(HOST) CAPTIONER_PORT=$(PORT) $(BIN)/captioner-serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m benchmarks

reliability: install
	$(BIN)/python -m benchmarks.reliability

train: install
	$(BIN)/python -m training train --data $(DATA) --artifacts artifacts --work-dir work \
		--time-budget-minutes 45

evaluate: install
	$(BIN)/python -m training evaluate --data $(DATA) --artifacts artifacts --split dev

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
