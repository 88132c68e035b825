"""A study as its storage keeps it: its name and results folder, the settings it was created with,
and its trials.

The settings (fixed configuration, search space, metric, corpus folder, sampler, pruner and
seeds per trial) are written into the study's user attributes when it is created and read back
by every later run, worker, ``study.best`` and ``study.report``: a resumed study searches as it
was created to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ner_core.config import TrainConfig
from ner_core.errors import UserError
from storage import describe

from .space import SearchSpace

DEFAULT_STUDY = "bilstm-crf"
# The attribute written last when a study is created: a study without it is not created yet.
CREATED_MARK = "base_config"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# What a study holds fixed unless told otherwise: the notebook's settings but a shorter schedule
# (20 epochs, patience 5), since the study pays for every epoch fifty times, dropout on the
# embeddings (0.4: +0.03 dev token macro-F1 over none at the best trial's shape, 3 seeds) and
# character bigrams (50: see README "Character bigrams").
STUDY_BASE = TrainConfig(max_epochs=20, patience=5, embed_dropout=0.4, bigram_dim=50)


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
    # Hyperband, not median pruning: on the full corpus it reached random search's median best in
    # half the bench's budget, where median pruning took 74% (README "Time to target").
    pruner: str = "hyperband"
    # TPE draws its first 5 trials at random (median pruning, if chosen, also waits for 5 finished
    # trials: a median of fewer is noise); a trial is first judged after its 3rd epoch (first
    # epochs are noisy; see README "The search").
    startup_trials: int = 5
    warmup_epochs: int = 3
    # Training runs per trial, under seeds seed, seed+1, ...; the trial's value is their mean dev
    # score. Two beat one in the same wall time on CHisIEC (README "What a study found").
    seeds_per_trial: int = 2

    def to_attrs(self) -> dict[str, Any]:
        return {
            "base_config": self.base.to_dict(),
            "space": self.space.to_dict(),
            "data_dir": self.data_dir,
            "metric": self.metric,
            "search": {
                "sampler": self.sampler,
                "pruner": self.pruner,
                "startup_trials": self.startup_trials,
                "warmup_epochs": self.warmup_epochs,
                "seeds_per_trial": self.seeds_per_trial,
            },
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], study_name: str) -> StudySettings | None:
        """The settings a study was created with (None for a study this suite did not create, or
        whose creator died before writing them all: base_config is written last).

        Studies created before the sampler, pruner and seeds per trial were stored get the defaults
        of the time (median pruning, one seed per trial).
        """
        if CREATED_MARK not in attrs:
            return None
        return cls(
            base=TrainConfig.from_dict(attrs["base_config"], f"study {study_name}"),
            space=SearchSpace.from_dict(attrs["space"]),
            data_dir=attrs.get("data_dir", ""),
            metric=attrs.get("metric", "token-macro-f1"),
            **{"pruner": "median", "seeds_per_trial": 1, **attrs.get("search", {})},
        )

    def replace(self, **changes: Any) -> StudySettings:
        return dataclasses.replace(self, **changes)


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
    return settings or StudySettings(STUDY_BASE, SearchSpace(), data_dir="")
