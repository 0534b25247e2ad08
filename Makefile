# Every target sets up the project's virtual environment first (once; again when pyproject.toml
# changes). Outputs go to runs/, reports/, figures/, bench/; data/ is never cleaned.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
STORE ?= runs
export HARNESS_STORE := $(STORE)

.DEFAULT_GOAL := help
.PHONY: help all test bench data venv clean baseline

help: ## list every target
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch pinned first: this CPU build lies on the build machines' disk; newer releases pull CUDA.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m harness data prepare
	@touch $@

venv: $(VENV)/.installed ## create the virtual environment and install the project

all: baseline ## set up, then run the main job (for now: the baseline experiment)

baseline: $(VENV)/.installed ## dropout network and its no-dropout twin on mnist5k
	$(PY) -m harness run experiments/baseline.py --profile $(PROFILE)

test: $(VENV)/.installed ## set up, then run the whole test suite
	$(PY) -m pytest -q

bench: $(VENV)/.installed ## benchmarks (ratios measured in one run), saved as JSON under bench/
	@mkdir -p bench
	$(PY) -m harness bench train --json > bench/train.json.tmp && mv bench/train.json.tmp bench/train.json
	$(PY) -m harness bench mc --memory --json > bench/mc.json.tmp && mv bench/mc.json.tmp bench/mc.json
	@cat bench/train.json bench/mc.json

data: $(VENV)/.installed ## download mnist, fashion-mnist and cifar10 into data/ (needs internet)
	$(PY) -m harness data fetch mnist
	$(PY) -m harness data fetch fashion-mnist
	$(PY) -m harness data fetch cifar10

clean: ## remove outputs (runs, reports, figures, benchmarks); never data/
	rm -rf runs reports figures bench
