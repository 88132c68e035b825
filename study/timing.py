"""How long ``study.best``'s trainings will take, from the chosen trials' own timings in the study.

Every trial records the seconds its runs took (``seconds``, all its seeds together) and its
training speed (``tokens_per_s``), measured on the machine and with the thread count that
``study.best`` reuses. A retraining repeats one of the trial's runs, so it takes about the trial's
seconds per seed; a refit trains the whole schedule on train + dev at the trial's speed.

One trial's speed is what the machine gave it while it ran (a shared host's load moved it 2x within
one study), so the speed counted is the median over its shape: every trial, pruned ones included,
that shares its sizes (``space.shape_of``) and runtime.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from optuna.trial import FrozenTrial

from ner_core.config import TrainConfig

from .space import shape_of


@dataclass(frozen=True)
class RunTimes:
    """Estimated seconds of one configuration's retraining and of its refit."""

    retraining: float
    refit: float


def speed_key(trial: FrozenTrial) -> tuple:
    """What a trial's training speed depends on: its shape and where it ran (device, threads, precision)."""
    where = tuple(trial.user_attrs.get(k) for k in ("device", "device_name", "threads", "precision"))
    return shape_of(trial.params), where


def shape_speeds(trials: list[FrozenTrial]) -> dict[tuple, float]:
    """The median training speed (characters per second) of each ``speed_key`` over the trials that
    recorded one, whatever their state (a pruned trial's epochs were timed too)."""
    speeds: dict[tuple, list[float]] = {}
    for trial in trials:
        if speed := trial.user_attrs.get("tokens_per_s"):
            speeds.setdefault(speed_key(trial), []).append(speed)
    return {key: statistics.median(values) for key, values in speeds.items()}


def run_times(
    trial: FrozenTrial, config: TrainConfig, refit_tokens: int, speeds: dict[tuple, float] | None = None
) -> RunTimes | None:
    """The trial's times, or None for a trial that did not record them (made by an older version).

    ``refit_tokens``: the characters of train + dev, what one refit epoch trains on. ``speeds``
    (``shape_speeds``): where the trial's shape is in it, its median speed replaces the trial's own,
    in the refit and in the retraining (the trial's seconds, scaled)."""
    seconds, own = trial.user_attrs.get("seconds"), trial.user_attrs.get("tokens_per_s")
    if not seconds or not own:
        return None
    speed = (speeds or {}).get(speed_key(trial), own)
    seeds = len(trial.user_attrs.get("dev_per_seed", [None]))
    return RunTimes(retraining=seconds / seeds * own / speed, refit=config.max_epochs * refit_tokens / speed)


def makespan(durations: list[float], jobs: int) -> float:
    """Wall time of runs started in this order, each on the first of ``jobs`` workers to be free (as a
    process pool starts them)."""
    free = [0.0] * jobs
    for duration in durations:
        first = free.index(min(free))
        free[first] += duration
    return max(free, default=0.0)


def estimate_seconds(times: list[RunTimes], seeds: int, ensemble: int, jobs: int, refit: bool = True) -> float:
    """Wall time of study.best for candidates with these run times, best first: every candidate's
    retrainings under ``seeds`` seeds, then ``seeds * ensemble`` refits of one of them. With one
    candidate the refits join the retrainings in one pool (the choice is known); with more the refits
    follow, and the slowest candidate's are counted (which one dev will choose is not known yet)."""
    retrainings = [t.retraining for t in times for _ in range(seeds)]
    refits = [max(t.refit for t in times)] * (seeds * ensemble) if refit else []
    if len(times) == 1:
        return makespan(retrainings + refits, jobs)
    return makespan(retrainings, jobs) + makespan(refits, jobs)


def largest_ensemble(times: list[RunTimes], seeds: int, most: int, jobs: int, budget_s: float) -> int:
    """The largest ensemble size up to ``most`` whose estimated wall time fits ``budget_s``; 1 if none does."""
    return next((n for n in range(most, 1, -1) if estimate_seconds(times, seeds, n, jobs) <= budget_s), 1)
