"""How the study searches: the sampler and the pruner, each chosen in one line from its settings."""

from __future__ import annotations

import optuna

from .gate import GatedTPESampler, TrialGate
from .stored import StudySettings

# Multivariate TPE with the constant liar (workers in parallel draw apart), behind the gate, after
# --startup-trials random draws; random search is TPE that never leaves its random start-up draws.
TPE = {"multivariate": True, "constant_liar": True}
SAMPLERS = {
    "tpe": lambda s, gate, seed: GatedTPESampler(gate, seed=seed, n_startup_trials=s.startup_trials, **TPE),
    "random": lambda s, gate, seed: GatedTPESampler(gate, seed=seed, n_startup_trials=1 << 30, **TPE),
}
# median: stop a trial below the median of earlier trials at the same epoch, after the warm-up;
# hyperband: successive halving over epochs, from the warm-up to max_epochs; none: never prune.
PRUNERS = {
    "median": lambda s: optuna.pruners.MedianPruner(s.pruner_startup_trials, s.warmup_epochs),
    "hyperband": lambda s: optuna.pruners.HyperbandPruner(max(1, s.warmup_epochs), s.base.max_epochs),
    "none": lambda s: optuna.pruners.NopPruner(),
}


def make_sampler(settings: StudySettings, gate: TrialGate, seed: int) -> GatedTPESampler:
    return SAMPLERS[settings.sampler](settings, gate, seed)


def make_pruner(settings: StudySettings) -> optuna.pruners.BasePruner:
    return PRUNERS[settings.pruner](settings)
