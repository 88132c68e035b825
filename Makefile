# Everything a newcomer needs: `make test`, then `make study` (or `make demo` for a quick look).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA_DIR ?= data/chisiec
# Use the local copy of CHisIEC when the checkout has one beside it (no download needed).
MIRROR := $(if $(wildcard ../shared/chisiec/train.txt),--mirror ../shared/chisiec,)
# Where studies live: empty means NER_HPO_STORAGE if set, else sqlite:///results/study.db (see
# README "Many workers, many machines"); a password is better kept in PGPASSWORD or ~/.pgpass.
STORAGE ?=
STORAGE_ARG := $(if $(STORAGE),--storage $(STORAGE),)
# The search runs 75 minutes (STUDY_TIMEOUT) or TRIALS finished trials, whichever comes first. On
# 2 cores the time ends it (the fastest CPU measured did 50 trials in 30 minutes, 166 in 92), so a
# fast machine spends the whole budget searching (README "What a study found").
TRIALS ?= 200
# Seconds after which `make study` ends: no trial starts after it, and trials still running stop at
# their next epoch end (kept as pruned; the same command resumes). 75 minutes and `make best`'s 38
# (BEST_MINUTES) leave about 5 of 2 hours for best's estimate to be short on 2 cores, on any CPU
# (README "The whole study"). Empty: no limit.
STUDY_TIMEOUT ?= 4500
# Minutes `make best` may take: its ensembles are as large (at most 10 refits) as are estimated to
# fit, from the study's timing of each shape, and a near-best trial fast enough for larger ensembles
# may be kept (README "Within a time budget", "Which trial, within a time budget"). Empty: always 10.
BEST_MINUTES ?= 38
# Worker processes for the study, each with cores/WORKERS torch threads: auto is one per CPU core
# (2 here, as in the README's timings; at most 8), or 4 per GPU on a machine with NVIDIA GPUs.
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

$(DATA_DIR)/train.txt: | install
	$(PY) -m ner_core.datasets fetch chisiec $(MIRROR) --dest $(DATA_DIR)

data: $(DATA_DIR)/train.txt

# The notebook's configuration, trained once and tested.
train: install data
	$(PY) -m ner_core.train --data-dir $(DATA_DIR) --out results/notebook --test

# The product's main job: a 75-minute Bayesian search (at most 200 trials; resumes if interrupted).
study: install data
	$(PY) -m study.run --trials $(TRIALS) --workers $(WORKERS) --data-dir $(DATA_DIR) $(STORAGE_ARG) \
		$(if $(STUDY_TIMEOUT),--timeout $(STUDY_TIMEOUT),)

# A quick look, 30 s to a minute on 2 cores: small models, few epochs, its own study name.
demo: install data
	$(PY) -m study.run --study-name demo --trials 6 --max-epochs 3 --hidden-sizes 32 64 --layers-range 1 1 \
		--batch-sizes 32 64 --seeds-per-trial 1 --startup-trials 3 --warmup-epochs 2 --data-dir $(DATA_DIR) $(STORAGE_ARG)

# Retrain the best configuration under 3 seeds, refit it on train + dev (an ensemble per seed), score the test split once per model.
best: install data
	$(PY) -m study.best --test --jobs 2 $(STORAGE_ARG) $(if $(BEST_MINUTES),--time-budget $(BEST_MINUTES),)

# Watch the studies live at http://127.0.0.1:8080 (SQLite, PostgreSQL or journal file alike).
dashboard: install
	$(PY) -m study.dashboard $(STORAGE_ARG)

clean:
	rm -rf results/*/ results/*.db results/*.db-* .pytest_cache
