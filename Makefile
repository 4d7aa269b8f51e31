# The README's two commands: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# torchvision is the test oracle; it pins the torch version the suite runs against.
EXTRAS := test

.PHONY: demo test lint format bench docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

# An end-to-end use of the command line on the sample pictures; offline it prints the model card and
# says which checkpoint to fetch and where to put it, and exits non-zero.
demo: $(STAMP)
	$(BIN)/visionzoo predict assets/chelsea.jpg assets/coffee.jpg --model resnet50 --topk 3

# docs/models.md and docs/accuracy_vs_gflops.png, regenerated from the registry (tests/test_docs.py checks them).
docs: $(STAMP)
	$(BIN)/python -m visionzoo.docs --out docs

# Ratio benchmarks against the reference: benchmarks/results/*.json, summary.md and speed.png.
# `make bench QUICK=1` is the short run.
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(if $(filter-out 0,$(QUICK)),--quick)

# Formatting and lint (ruff, configured in pyproject.toml) are part of the test run; `make format` fixes what it can.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -q -n 2 --timeout 900 --durations 15 tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
