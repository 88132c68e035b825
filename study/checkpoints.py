"""Trials' checkpoints: a killed worker's trial is retried from its last epoch, not from the start.

Each running trial keeps one file, ``results/<study>/checkpoints/<uid>/trial-<number>.pt``, replaced at each
epoch end and after each seed (written whole, then renamed over the old one:
``ner_core.checkpoint.save_state``), and removed once the trial's end is stored (complete, pruned,
or failed by its own error). It holds ner_core's training state of the seed running (model,
optimizer, scheduler, best weights, random generators, epoch history), the trial's configuration,
the finished seeds' epochs and stop reasons, and the values reported to the pruner.

Optuna's RetryHeartbeatStaleTrialCallback queues a dead worker's trial again, as a new trial with
the same parameters whose system attribute ``retry_history`` lists the trials it retries. The new
trial renames the newest of their checkpoints to its own name (a chain of retries keeps one file)
and goes on from it. Its worker must see the same results folder: on another machine without it,
the trial trains from the start, with a note.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

from ner_core.checkpoint import State, load_state, save_state
from ner_core.config import TrainConfig
from ner_core.errors import UserError
from ner_core.train import EpochResult

from .stored import FINISHED, results_dir


@dataclass
class Progress:
    """How far a trial got: what its checkpoint holds."""

    config: TrainConfig  # the trial's configuration (its first seed's)
    finished: list[list[EpochResult]]  # each finished seed's epochs
    stop_reasons: list[str]  # each finished seed's stop_reason
    reported: dict[int, float]  # what the pruner was told: epoch -> dev objective
    training: State | None = None  # the running seed's fit state; None before its first epoch ends

    def resumes_after(self, seeds: int) -> tuple[int, int]:
        """(which of ``seeds`` runs, from 1; its last epoch not trained again, 0 for none) a trial
        going on from this goes on after."""
        if self.training:
            return len(self.finished) + 1, len(self.training["history"])
        if len(self.finished) == seeds:  # every seed trained: only the result was left to store
            return seeds, len(self.finished[-1])
        return len(self.finished) + 1, 0

    def to_state(self) -> State:
        return {
            "config": self.config.to_dict(),
            "finished": [[dataclasses.asdict(e) for e in run] for run in self.finished],
            "stop_reasons": self.stop_reasons,
            "reported": self.reported,
            "training": self.training,
        }

    @classmethod
    def from_state(cls, state: State) -> Progress:
        return cls(
            config=TrainConfig.from_dict(state["config"], "a checkpoint"),
            finished=[[EpochResult(**e) for e in run] for run in state["finished"]],
            stop_reasons=list(state["stop_reasons"]),
            reported=dict(state["reported"]),
            training=state["training"],
        )


def retried(storage: optuna.storages.BaseStorage) -> bool:
    """Whether a dead worker's trial is retried on this storage (heartbeats: SQLite and PostgreSQL,
    not a journal file), the only case in which a checkpoint is read again."""
    return isinstance(storage, RDBStorage) and storage.heartbeat_interval is not None


class TrialCheckpoints:
    """The checkpoint files of one study's trials."""

    def __init__(self, study_name: str, uid: str | None):
        # the study's own uid (written when it is created) keeps apart the files of studies of one
        # name in other storages run from the same folder, such as study.bench's arms
        self.folder = results_dir(study_name) / "checkpoints" / (uid or "")

    def path(self, number: int) -> Path:
        return self.folder / f"trial-{number}.pt"

    def save(self, number: int, progress: Progress) -> None:
        save_state(self.path(number), progress.to_state())

    def take_over(self, number: int, retries: list[int], config: TrainConfig) -> tuple[int, Progress] | None:
        """For trial ``number``, retrying the trials ``retries`` (oldest first): the checkpoint of the
        newest of them that left one, renamed to its own, and that trial's number; None when there is
        none to go on from (a note says why where one was expected). The checkpoint's configuration may
        differ from ``config`` in its seed only (that of the worker that wrote it), which it keeps."""
        for origin in reversed(retries):
            if not self.path(origin).exists():
                continue
            mine = self.path(number)
            os.replace(self.path(origin), mine)
            try:
                progress = Progress.from_state(load_state(mine))
            except (OSError, RuntimeError, KeyError, TypeError, ValueError, UserError, pickle.UnpicklingError) as err:
                # a damaged file, or one an older version wrote: the trial trains as if it had none
                note(f"trial {number} retries trial {origin}, whose checkpoint cannot be read ({type(err).__name__})")
                return None
            # Each worker trains under its own --seed: a retry goes on under the seed the checkpoint ran.
            if progress.config.replace(seed=config.seed) != config:
                note(f"trial {number} retries trial {origin}, whose checkpoint holds another configuration")
                return None
            return origin, progress
        if retries:
            note(
                f"trial {number} retries trial {retries[-1]}, whose checkpoint is not in {self.folder} "
                "(written on another machine?)"
            )
        return None

    def remove(self, number: int, retries: list[int]) -> None:
        """Remove a finished trial's checkpoint, any unfinished write of it, and any left by the trials
        it retries (a worker stopped, not dead, may write one after the retry took its file over)."""
        for n in [number, *retries]:
            path = self.path(n)
            path.unlink(missing_ok=True)
            for temp in self.folder.glob(f".{path.name}.*.tmp"):
                temp.unlink(missing_ok=True)

    def sweep(self, study: optuna.Study) -> None:
        """Remove the checkpoints of trials stored as complete or pruned (those of failed trials are
        their retries' to take over)."""
        ended = {t.number for t in study.get_trials(deepcopy=False, states=FINISHED)}
        for path in self.folder.glob("trial-*.pt"):
            if int(path.stem.removeprefix("trial-")) in ended:
                path.unlink(missing_ok=True)


def retry_history(trial: optuna.Trial | FrozenTrial) -> list[int]:
    """The trials ``trial`` retries, oldest first ([] for a trial that retries none)."""
    if isinstance(trial, optuna.Trial):
        # trial._trial_id: Optuna's Trial has no public id to read its system attributes by
        trial = trial.storage.get_trial(trial._trial_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retry_history(trial)


def note(text: str) -> None:
    print(f"note: {text}; training it from the start", file=sys.stderr, flush=True)
