"""A study as its storage keeps it: its name and results folder, the settings it was created with,
and its trials.

The settings (fixed configuration, search space, metric, corpus folder and fingerprint, pretrained
vectors, sampler, pruner and seeds per trial) are written into the study's user attributes when it
is created and read back by every later run, worker, ``study.best`` and ``study.report``: a resumed
study searches as it was created to, on the corpus it was created on.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ner_core.config import TrainConfig
from ner_core.data import Corpus, load_corpus, resolve_data_dir
from ner_core.errors import UserError
from storage import describe

from .fingerprint import CorpusPrint, VectorsPrint, check_corpus
from .space import SearchSpace

DEFAULT_STUDY = "bilstm-crf"
# The attribute written last when a study is created: a study without it is not created yet.
CREATED_MARK = "base_config"
# A study's own name, unique across storages (a uuid written when it is created; a study made before
# it was written has none): what its files on disk are kept apart by.
UID = "uid"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# What a study holds fixed unless told otherwise: the notebook's settings but a shorter schedule
# (20 epochs, patience 5), since the study pays for every epoch fifty times, dropout on the
# embeddings (0.4: +0.03 dev token macro-F1 over none at the best trial's shape, 3 seeds) and
# character bigrams (50: see docs/decisions.md, Bigrams).
STUDY_BASE = TrainConfig(max_epochs=20, patience=5, embed_dropout=0.4, bigram_dim=50)
# Hyperband's first rung, unless --warmup-epochs is given: where it was benchmarked.
HYPERBAND_WARMUP_EPOCHS = 3


def results_dir(study_name: str) -> Path:
    """Where a study's report, retrained model and worker logs go."""
    return Path("results") / study_name


@dataclass(frozen=True)
class StudySettings:
    """Everything a study is created with; stored in the study, so that resuming keeps it."""

    base: TrainConfig
    space: SearchSpace
    data_dir: str
    metric: str = "token-macro-f1"
    sampler: str = "tpe"
    # Median pruning, as the design card asks: on the full-corpus bench it ended with the higher median
    # best dev (0.7209 against Hyperband's 0.7060, 4 seeds) though it reached random search's median
    # best later (docs/decisions.md, The pruner). Hyperband stays --pruner hyperband.
    pruner: str = "median"
    # TPE draws its first 5 trials at random (Optuna's 10 would leave a short study on 2 cores mostly
    # random). Median pruning starts once 2 trials have finished and judges a trial from its 1st epoch:
    # in searches replayed on dev, the settings that reached random search's best soonest on CHisIEC
    # (docs/decisions.md, The pruner). Hyperband's brackets start at the warm-up epochs: 3 unless given,
    # as it was benchmarked (HYPERBAND_WARMUP_EPOCHS).
    startup_trials: int = 5
    pruner_startup_trials: int = 2
    warmup_epochs: int = 1
    # Training runs per trial, under seeds seed, seed+1, ...; the trial's value is their mean dev
    # score. One: at equal trainings, twice the trials found better models on held-out dev on both
    # corpora (docs/decisions.md, Seeds per trial).
    seeds_per_trial: int = 1
    # What the trials train on (study.fingerprint); None in a study made before they were stored.
    corpus: CorpusPrint | None = None
    embeddings: VectorsPrint | None = None

    def to_attrs(self) -> dict[str, Any]:
        return {
            "base_config": self.base.to_dict(),
            "space": self.space.to_dict(),
            "data_dir": self.data_dir,
            "corpus": self.corpus and self.corpus.to_attr(),
            "embeddings": self.embeddings and self.embeddings.to_attr(),
            "metric": self.metric,
            "search": {
                "sampler": self.sampler,
                "pruner": self.pruner,
                "startup_trials": self.startup_trials,
                "pruner_startup_trials": self.pruner_startup_trials,
                "warmup_epochs": self.warmup_epochs,
                "seeds_per_trial": self.seeds_per_trial,
            },
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], study_name: str) -> StudySettings | None:
        """The settings a study was created with (None for a study this suite did not create, or
        whose creator died before writing them all: base_config is written last).

        Studies created before the sampler, pruner and seeds per trial were stored get the defaults
        of the time (median pruning, one seed per trial); before the pruner's start-up trials were
        stored, it waited for the sampler's.
        """
        if CREATED_MARK not in attrs:
            return None
        search = {"pruner": "median", "seeds_per_trial": 1, **attrs.get("search", {})}
        search.setdefault("pruner_startup_trials", search.get("startup_trials", 5))
        return cls(
            base=TrainConfig.from_dict(attrs["base_config"], f"study {study_name}"),
            space=SearchSpace.from_dict(attrs["space"]),
            data_dir=attrs.get("data_dir", ""),
            corpus=CorpusPrint.from_attr(attrs.get("corpus")),
            embeddings=VectorsPrint.from_attr(attrs.get("embeddings")),
            metric=attrs.get("metric", "token-macro-f1"),
            **search,
        )

    def replace(self, **changes: Any) -> StudySettings:
        return dataclasses.replace(self, **changes)


# Every setting at its default (the suite's defaults for a study it did not create).
DEFAULTS = StudySettings(STUDY_BASE, SearchSpace(), data_dir="")


def get_study_id(storage: optuna.storages.BaseStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def trials_of(
    storage: optuna.storages.BaseStorage, name: str, states: tuple[TrialState, ...] | None = None
) -> list[FrozenTrial]:
    """The study's trials straight from the storage ([] while it does not exist)."""
    study_id = get_study_id(storage, name)
    return [] if study_id is None else storage.get_all_trials(study_id, deepcopy=False, states=states)


def recorded_settings(storage: optuna.storages.BaseStorage, name: str) -> StudySettings | None:
    """The settings of an existing study; None when there is no such study (nothing is created)."""
    study_id = get_study_id(storage, name)
    return None if study_id is None else StudySettings.from_attrs(storage.get_study_user_attrs(study_id), name)


def load_study(storage: optuna.storages.BaseStorage, name: str, url: str | None) -> optuna.Study:
    """The named study, or a UserError listing the studies that exist."""
    names = optuna.study.get_all_study_names(storage)
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise UserError(f"no study named '{name}' in {describe(url)} (studies there: {known})")
    return optuna.load_study(study_name=name, storage=storage)


def study_settings(study: optuna.Study) -> StudySettings:
    """The settings of a loaded study; the suite's defaults for one it did not create."""
    settings = StudySettings.from_attrs(study.user_attrs, study.study_name)
    return settings or DEFAULTS


def study_corpus(
    name: str, data_dir: str | None, kept: StudySettings | None, with_test: bool = False
) -> tuple[Corpus, CorpusPrint]:
    """The corpus a command on study ``name`` reads, and its fingerprint. One rule for where it is, the
    same in every command: ``data_dir`` (--data-dir), else $NER_DATA_DIR, else the folder of the
    study (``kept``: its settings, where it exists), else data/chisiec. UserError, in one line, when
    the study was made on another corpus."""
    corpus = load_corpus(
        resolve_data_dir(data_dir or os.environ.get("NER_DATA_DIR") or (kept.data_dir if kept else None)), with_test
    )
    found = CorpusPrint.of(corpus)
    if kept is not None and kept.corpus is not None:
        check_corpus(name, kept.corpus, found)
    return corpus, found


def adopt_prints(study: optuna.Study, corpus: CorpusPrint, vectors: VectorsPrint | None) -> str:
    """Store the fingerprints in a study made before studies kept them; the note that says so."""
    study.set_user_attr("embeddings", vectors and vectors.to_attr())
    study.set_user_attr("corpus", corpus.to_attr())
    return (
        f"note: study '{study.study_name}' was made before studies stored their corpus; it now keeps that of "
        f"{corpus.folder}"
        + (f" and the pretrained vectors {vectors.path}" if vectors else "")
        + ", and later runs on another corpus are refused"
    )
