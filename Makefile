# The dropout harness, driven by files: a study's runs depend on its experiment file and the
# library; its tables on its runs; a figure on its script, the shared style and the tables it reads;
# the report on every table and figure. Editing one of them rebuilds what depends on it and nothing
# else; finished runs are cached in the run store, so a second `make all` takes seconds.
# Every target sets up the project's virtual environment first (once; again when pyproject.toml
# changes). Outputs: runs/, reports/<profile>/, figures/<profile>/, bench/; data/ is never cleaned.
SHELL := /bin/bash
# a recipe that fails leaves no half-written target that a later make would take as up to date
.DELETE_ON_ERROR:
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
# the dataset every study runs on: empty for each study's own (quick: mnist5k); a name (`python -m
# harness data list`) or a .npz file's path. Outputs go to reports/PROFILE-DATASET/ beside the default's.
DATASET ?=
default_dataset_quick := mnist5k
default_dataset_smoke := digits
# the setting's name, as harness/sweep/setting.py gives it (one definition: a .npz file adds a hash of its path)
# A path may hold spaces (and quotes): make splits words on spaces, so DATASET is used as one
# shell-quoted word (DATASET_Q) in commands and with escaped spaces as a prerequisite (DATAFILE).
empty :=
space := $(empty) $(empty)
DATASET_Q := '$(subst ','\'',$(DATASET))'
SETTING := $(if $(filter-out $(default_dataset_$(PROFILE)),$(DATASET)),$(shell $(PYTHON) -m harness.sweep.setting name '$(PROFILE)' $(DATASET_Q)),$(PROFILE))
DSFLAG := $(if $(filter-out $(default_dataset_$(PROFILE)),$(DATASET)),--dataset $(DATASET_Q))
DATAFILE := $(if $(filter %.npz,$(lastword $(DATASET))),$(subst $(space),\ ,$(DATASET)))
$(if $(DATAFILE),$(if $(shell test -f $(DATASET_Q) && echo yes),,$(error DATASET=$(DATASET): no such file; give the path of a .npz file with arrays x and y (and optionally x_test, y_test))))
# where reports/ and figures/ go (default: here); `make paper-check` writes into a temporary folder
OUT ?= .
OUTDIR := $(if $(filter .,$(OUT)),,$(OUT)/)
ifeq ($(OUT),.)
unexport HARNESS_OUT
else
export HARNESS_OUT := $(abspath $(OUT))
endif
DEVICE ?= cpu
# the run store: STORE=dir, else $HARNESS_STORE when it is set, else runs/
STORE ?= $(or $(HARNESS_STORE),runs)
EXECUTOR ?= processes
WORKERS ?=
export HARNESS_STORE := $(abspath $(STORE))

# the studies and the figures drawn from each study's tables, from their one list (harness/sweep/studies.py)
STUDY_WORDS := $(shell $(PYTHON) -m harness.sweep.studies make)
$(if $(STUDY_WORDS),,$(error cannot read the list of studies: `$(PYTHON) -m harness.sweep.studies make` failed; set PYTHON to a Python 3.11 or newer))
STUDIES := $(patsubst s/%,%,$(filter s/%,$(STUDY_WORDS)))
FIGURE_STUDY := $(patsubst f/%,%,$(filter f/%,$(STUDY_WORDS)))
FIGURES := $(foreach p,$(FIGURE_STUDY),$(firstword $(subst =, ,$(p))))
# study_FIGURE: the study whose tables FIGURE reads
$(foreach p,$(FIGURE_STUDY),$(eval study_$(firstword $(subst =, ,$(p))) := $(lastword $(subst =, ,$(p)))))

REPORT := $(OUTDIR)reports/$(SETTING)
TABLES := $(REPORT)/tables
FIGDIR := $(OUTDIR)figures/$(SETTING)
STAMPS := $(REPORT)/.runs
LIB := $(wildcard harness/*.py harness/*/*.py)
INSTALLED := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help all experiments tables figures report test test-fast lint bench data venv clean baseline plan paper-check generality $(STUDIES)

help: ## list every target
	@grep -hE '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "  make STUDY        one study's runs, tables, figures and verdicts, STUDY in: $(STUDIES)"
	@echo "  variables: PROFILE=quick|paper|smoke (default quick), DATASET=name or path/to/file.npz (default: each study's own),"
	@echo "             STORE=dir (default \$$HARNESS_STORE, else runs), EXECUTOR=processes|local|ray (default processes), WORKERS=N, DEVICE=cpu|cuda (plan)"

$(INSTALLED): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch pinned first: this CPU build lies on the build machines' disk; newer releases pull CUDA.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m harness data prepare
	@touch $@

venv: $(INSTALLED) ## create the virtual environment and install the project

all: report ## set up, run every study of PROFILE, write tables, figures and reports/PROFILE/index.html

experiments: $(STUDIES:%=$(STAMPS)/%) ## train and evaluate every study's runs (cached in the store)

tables: $(STUDIES:%=$(TABLES)/%/runs.parquet) ## collect each study's tidy tables from the store

figures: $(FIGURES:%=$(FIGDIR)/%.png) ## draw every figure (PDF and PNG)

report: $(REPORT)/index.html ## the report: Markdown, CSV and one HTML page with every table and figure

# a study's runs, look by look (analysis/looks.py): the next look's seeds only while a claim row is
# still open; the stamp holds the look reached, and the tables collect that look's runs
$(STAMPS)/%: experiments/%.py $(LIB) analysis/looks.py analysis/claims.py analysis/claim_specs.py analysis/claim_values.py analysis/tables.py analysis/labels.py analysis/presentation.py $(DATAFILE) | $(INSTALLED)
	@mkdir -p $(@D)
	$(PY) -m analysis.looks $* --profile $(PROFILE) $(DSFLAG) --stamp $@ --executor $(EXECUTOR) $(if $(WORKERS),--workers $(WORKERS))

# shift analyses the runs that ensemble_vs_dropout lists
$(STAMPS)/shift: experiments/ensemble_vs_dropout.py

$(TABLES)/%/runs.parquet: $(STAMPS)/% analysis/tables.py | $(INSTALLED)
	$(PY) -m analysis.tables $* --profile $(PROFILE) $(DSFLAG) --look "$$(sed -n 1p $<)"

# a study's tables that do not match their folder's manifest (a changed, truncated or missing file, or
# a collection killed half-way) are collected again, whatever their times say
DAMAGED_TABLES := $(if $(wildcard $(TABLES)),$(shell test -x $(PY) && $(PY) -m harness.store.output_manifest damaged '$(TABLES)' 2>/dev/null))
$(DAMAGED_TABLES:%=$(TABLES)/%/runs.parquet): FORCE
.PHONY: FORCE
FORCE:

.SECONDEXPANSION:
$(FIGDIR)/%.png: analysis/fig_%.py analysis/style.py analysis/labels.py analysis/tables.py analysis/paths.py harness/stats/intervals.py $$(TABLES)/$$(study_$$*)/runs.parquet | $(INSTALLED)
	$(PY) -m analysis.fig_$* --profile $(PROFILE) $(DSFLAG)

$(REPORT)/index.html: analysis/report.py analysis/summaries.py analysis/claims.py analysis/claim_specs.py analysis/claim_values.py harness/stats/sequential.py analysis/presentation.py analysis/tables.py analysis/reference.py analysis/labels.py analysis/paths.py harness/stats/intervals.py harness/stats/verdicts.py harness/inference/coadaptation.py $(STUDIES:%=$(TABLES)/%/runs.parquet) $(FIGURES:%=$(FIGDIR)/%.png) | $(INSTALLED)
	$(PY) -m analysis.report --profile $(PROFILE) $(DSFLAG)

$(STUDIES): %: $(TABLES)/%/runs.parquet
	$(MAKE) --no-print-directory $(foreach f,$(FIGURES),$(if $(filter $*,$(study_$(f))),$(FIGDIR)/$(f).png))
	$(PY) -m analysis.claims --profile $(PROFILE) $(DSFLAG) --study $*

baseline: $(INSTALLED) ## the default dropout network and its no-dropout twin on mnist5k
	$(PY) -m harness run experiments/baseline.py --profile $(PROFILE)

GENERALITY := mnist5k mnist1d digits
comma := ,
generality: $(INSTALLED) ## the quick design on mnist5k, MNIST-1D and digits: one claims table over the three settings (reports/generality/)
	$(foreach d,$(GENERALITY),$(MAKE) --no-print-directory report PROFILE=quick DATASET=$(d) &&) true
	$(PY) -m analysis.generality --profile quick --datasets $(subst $(space),$(comma),$(GENERALITY))

plan: $(INSTALLED) ## before training: every study's runs, FLOPs and estimated time on DEVICE (works without the data)
	$(PY) -m harness.sweep.plan --profile $(PROFILE) $(DSFLAG) --device $(DEVICE)

# every study of the paper profile end to end (runs, tables, figures, report) on stand-in files in
# the paper's data layout, cut down to a few steps, in a temporary folder (CHECK_DIR to choose it)
CHECK_DIR ?=
paper-check: $(INSTALLED) ## prove the paper profile end to end on stand-in data in minutes, before launching it
	@dir="$(CHECK_DIR)"; dir="$${dir:-$$(mktemp -d -t paper-check.XXXXXX)}"; \
	$(PY) -m harness.data.standins "$$dir/data" && \
	HARNESS_CHECK=1 HARNESS_DATA_DIR="$$dir/data" $(MAKE) --no-print-directory all PROFILE=paper DATASET= OUT="$$dir" STORE="$$dir/runs" && \
	echo "paper-check passed: every study of the paper profile ran end to end on stand-in data; report: $$dir/reports/paper/index.html"

test: lint ## set up, check formatting and lint, run the whole test suite and list its ten slowest tests
	$(PY) -m pytest -q --durations=10

# the tests marked slow (pyproject.toml's markers): whole studies, make end to end, Ray, process races, simulations
test-fast: $(INSTALLED) ## the unit tests: every test not marked slow (the loop while editing; `make test` runs all)
	$(PY) -m pytest -q -m "not slow"

lint: $(INSTALLED) ## check formatting and lint as CI does (ruff format --check, ruff check)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

bench: $(INSTALLED) ## benchmarks (ratios measured in one run), saved as JSON under bench/
	@mkdir -p bench
	$(PY) -m harness bench train --json > bench/train.json.tmp && mv bench/train.json.tmp bench/train.json
	$(PY) -m harness bench mc --memory --json > bench/mc.json.tmp && mv bench/mc.json.tmp bench/mc.json
	$(PY) -m harness bench sweep --json > bench/sweep.json.tmp && mv bench/sweep.json.tmp bench/sweep.json
	@cat bench/train.json bench/mc.json bench/sweep.json

data: $(INSTALLED) ## download mnist, fashion-mnist and cifar10 into data/ (needs internet)
	$(PY) -m harness data fetch mnist
	$(PY) -m harness data fetch fashion-mnist
	$(PY) -m harness data fetch cifar10

clean: ## remove outputs (runs, reports, figures, benchmarks); never data/
	rm -rf runs reports figures bench
