# Captioner: `make serve` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
DATA ?= ../shared/flickr8k
# Text-only caption corpora the decoder also learns sentences from, e.g.
# TEXT=../shared/caption-text; empty (the committed model's recipe): Flickr8k's captions only.
TEXT ?=
# Labelled photos (labels.tsv) that grounding's heads also learn from; the committed model's
# used ../shared/openworld/labels.tsv, with its photos in GROUNDING_PHOTOS.
GROUNDING_LABELS ?=
GROUNDING_PHOTOS ?= ../shared/openworld/imagenet-sample

.PHONY: install install-dev serve test lint format bench reliability train evaluate clean

# Two stamps in one virtualenv: `install` holds what serving needs (`pip install .`, no
# TensorFlow); `install-dev` adds training and the test tools. Each re-runs only when the
# dependency lists change, so both are idempotent.
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml requirements-serve.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml requirements-serve.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[train,dev,bulk]"
	touch $@

serve: install
	CAPTIONER_HOST=$(HOST) CAPTIONER_PORT=$(PORT) $(BIN)/captioner serve

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install-dev lint
	$(BIN)/python -m pytest

bench: install-dev
	$(BIN)/python -m benchmarks

reliability: install-dev
	$(BIN)/python -m benchmarks.reliability

train: install-dev
	$(BIN)/python -m training train --data $(DATA) --artifacts artifacts --work-dir work \
		$(if $(TEXT),--text-corpora $(TEXT) --time-budget-minutes 55,--time-budget-minutes 45)
	$(BIN)/python -m training add-grounding --data $(DATA) --artifacts artifacts \
		--cache work/grounding \
		$(if $(GROUNDING_LABELS),--extra-labels $(GROUNDING_LABELS) --extra-photos $(GROUNDING_PHOTOS))

evaluate: install-dev
	$(BIN)/python -m training evaluate --data $(DATA) --artifacts artifacts --split dev

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
