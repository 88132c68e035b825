# Everything a newcomer needs: `make test`, then `make study` (or `make demo` for a quick look).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The corpus: DATA_DIR if given (passed on as --data-dir), else $NER_DATA_DIR, else (make study on an
# existing study, make best) the study's own folder, else data/chisiec. Only the known corpora's
# folders, data/chisiec and data/cclue, are fetched; any other folder must hold train.txt already.
DATA_DIR ?=
CORPUS := $(or $(DATA_DIR),$(NER_DATA_DIR),data/chisiec)
DATA_ARG := $(if $(DATA_DIR),--data-dir $(DATA_DIR),)
KNOWN := $(filter data/chisiec data/cclue,$(patsubst %/,%,$(CORPUS)))
# Use the local copy of a known corpus when the checkout has one beside it (no download needed).
MIRROR := $(if $(wildcard ../shared/$(notdir $(KNOWN))/train.txt),--mirror ../shared/$(notdir $(KNOWN)),)
# The study's name: empty means bilstm-crf. A study keeps the corpus it was made on, so a second
# corpus needs a study of its own: make study DATA_DIR=data/cclue STUDY=cclue, then make best STUDY=cclue.
STUDY ?=
STUDY_ARG := $(if $(STUDY),--study-name $(STUDY),)
# Where studies live: empty means NER_HPO_STORAGE if set, else sqlite:///results/study.db (see
# docs/distributed.md); a password is better kept in PGPASSWORD or ~/.pgpass.
STORAGE ?=
STORAGE_ARG := $(if $(STORAGE),--storage $(STORAGE),)
# The search runs 75 minutes (STUDY_TIMEOUT) or TRIALS finished trials, whichever comes first. On
# 2 cores either can: with pruning from epoch 1 an AMD EPYC Zen 4 finished 200 trials in 68 minutes
# on CHisIEC, while on CCLUE an Intel Xeon finished 52 in the 75 (docs/results.md, Every run).
TRIALS ?= 200
# Seconds after which `make study` ends: no trial starts after it, and trials still running stop at
# their next epoch end (kept as pruned; the same command resumes). 75 minutes and `make best
# REFIT=1`'s 38 (BEST_MINUTES) leave about 5 of 2 hours for best's estimate to be short on 2 cores, on
# any CPU (docs/decisions.md, The time budgets). Empty: no limit.
STUDY_TIMEOUT ?= 4500
# REFIT=1: make best also refits the chosen configuration on train + dev, as ensembles of up to 10
# (--refit --ensemble 10, the earlier default), and tests those instead of the retrainings (off by
# default: docs/decisions.md, The refit).
REFIT ?=
# Minutes `make best REFIT=1` may take: its ensembles are as large (at most 10 refits) as are estimated
# to fit, from the study's timing of each shape, and a near-best trial fast enough for larger ensembles
# may be kept (docs/guide.md, Within a time budget; docs/guide.md, Which trial, within a time budget).
# 38 is study.best's own default; empty: no limit, always 10.
BEST_MINUTES ?= 38
# make best reads a study's test split once; RETEST=1 reads it again (recorded, like every reading).
RETEST ?=
# Worker processes for the study, each with cores/WORKERS torch threads: auto is one per CPU core
# (2 here, as in docs/results.md; at most 8), or 4 per GPU on a machine with NVIDIA GPUs.
WORKERS ?= auto

.PHONY: install test lint data train study demo best dashboard clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,postgres]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

data: install
ifeq ($(wildcard $(CORPUS)/train.txt),)
ifeq ($(KNOWN),)
	@echo "error: $(CORPUS)/train.txt: no corpus there (a corpus folder holds train.txt, dev.txt and test.txt; only data/chisiec and data/cclue are fetched)" >&2; exit 2
else
	$(PY) -m ner_core.datasets fetch $(notdir $(KNOWN)) $(MIRROR) --dest $(KNOWN)
endif
endif

# The notebook's configuration, trained once and tested.
train: install data
	$(PY) -m ner_core.train --data-dir $(CORPUS) --out results/notebook --test

# The product's main job: a 75-minute Bayesian search (at most 200 trials; resumes if interrupted).
study: install data
	$(PY) -m study.run --trials $(TRIALS) --workers $(WORKERS) $(DATA_ARG) $(STUDY_ARG) $(STORAGE_ARG) \
		$(if $(STUDY_TIMEOUT),--timeout $(STUDY_TIMEOUT),)

# A quick look, a few minutes on 2 cores: small models, few epochs, its own study name.
demo: install data
	$(PY) -m study.run --study-name $(or $(STUDY),demo) --trials 6 --max-epochs 3 --hidden-sizes 32 64 --layers-range 1 1 \
		--batch-sizes 32 64 --startup-trials 3 --warmup-epochs 2 --data-dir $(CORPUS) $(STORAGE_ARG)

# Retrain the best configuration under 3 seeds and score the test split once per model, one training
# per core at a time (REFIT=1: refit ensembles on train + dev, tested instead).
best: install
	$(PY) -m study.best --test $(if $(RETEST),--retest,) $(if $(REFIT),--refit --ensemble 10,) $(DATA_ARG) $(STUDY_ARG) $(STORAGE_ARG) --time-budget $(or $(BEST_MINUTES),none)

# Watch the studies live at http://127.0.0.1:8080 (SQLite, PostgreSQL or journal file alike).
dashboard: install
	$(PY) -m study.dashboard $(STORAGE_ARG)

clean:
	rm -rf results/*/ results/*.db results/*.db-* .pytest_cache
