"""The exact-N gate: a study ends at exactly --trials finished trials, however many workers share it."""

from __future__ import annotations

import time
import warnings

import optuna
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from .stored import FINISHED, get_study_id, trials_of

# How often a worker with no trial to start looks again (for a dead worker's trial to take over).
WAIT_S = 2.0


class NoRoom(Exception):
    """A trial that would take the study past --trials; it is back in the queue (WAITING)."""


class TrialGate:
    """Ends the study at exactly --trials finished trials, however many workers share it.

    A worker starts a trial only while finished + running trials < target. When the study is
    full it waits, failing stale trials as it goes: a dead worker's trial is then failed, queued
    again by the storage's RetryHeartbeatStaleTrialCallback, and run here (Optuna only does that
    when some worker starts another trial, and MaxTrialsCallback overshoots by up to a trial per
    worker). Two workers that start their trials at the same instant both see the other's new
    RUNNING trial in ``admit`` (called by the sampler before anything runs or beats); one that
    counts too many puts its trial back to WAITING and waits. Without heartbeats (journal
    storage) a running trial may belong to a dead worker forever, so running trials are not
    counted there and K workers may finish up to K-1 trials more.
    """

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str, target: int):
        self.storage = storage
        self.study_name = study_name
        self.target = target
        self.heartbeats = isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None

    def counts(self) -> tuple[int, int]:
        """(finished, running) trials of the study."""
        trials = trials_of(self.storage, self.study_name, states=(*FINISHED, TrialState.RUNNING))
        done = sum(t.state in FINISHED for t in trials)
        return done, len(trials) - done

    def wait_for_room(self, study: optuna.Study, deadline: float | None) -> bool:
        """True when this worker may start a trial; False when the study is done or time is up."""
        while True:
            if self.heartbeats:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    fail_stale_trials(study)  # FAIL + a retry in the queue for each dead worker's trial
            done, running = self.counts()
            if done >= self.target or (deadline is not None and time.monotonic() >= deadline):
                return False
            if not self.heartbeats or done + running < self.target:
                return True
            time.sleep(WAIT_S)

    def admit(self, trial: FrozenTrial) -> None:
        """Raise NoRoom (the trial back to WAITING) if the study counts too many with ``trial``."""
        if not self.heartbeats or sum(self.counts()) <= self.target:
            return
        study_id = get_study_id(self.storage, self.study_name)
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        self.storage.set_trial_state_values(trial_id, TrialState.WAITING)
        raise NoRoom(f"trial {trial.number}")


class GatedTPESampler(optuna.samplers.TPESampler):
    """TPE whose trials start only when the gate admits them (``before_trial`` runs in study.ask)."""

    def __init__(self, gate: TrialGate, **kwargs):
        super().__init__(**kwargs)
        self.gate = gate

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.gate.admit(trial)
        super().before_trial(study, trial)
