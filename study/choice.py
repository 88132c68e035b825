"""Which trials ``study.best`` retrains: the best by search score, or, within a time budget, the best
by what their kept models are expected to score once the ensembles that fit are counted.

Within ``make best``'s minutes a slow configuration gets small ensembles (a 256 x 2 pick on 2 cores:
3 refits per seed) and a fast one large ones (10), and ensembles score higher on dev the larger
they are. How much higher was measured three times with ``ner_core.spread`` (members trained as
refits, on train alone, scored on dev; docs/measurements.md, Three or five, measured again, and Five or ten?):
the dev token macro-F1 of an ensemble of n rose over single members by about G (1 - 1/n), the
share of the members' own variance that averaging removes, with G = 0.026, 0.023 and 0.011 on the
three picks (each measured size, 3, 4, 5 or 10, within 0.0003 of its pick's curve).
``ENSEMBLE_GAIN`` is their mean.
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna.trial import FrozenTrial

from .timing import RunTimes, largest_ensemble

ENSEMBLE_GAIN = 0.02


def ensemble_gain(members: int, gain: float = ENSEMBLE_GAIN) -> float:
    """The dev score an ensemble of ``members`` is expected to gain over one of its members."""
    return gain * (1 - 1 / members)


@dataclass(frozen=True)
class Ranked:
    """A trial with the ensemble size that fits the budget and its expected kept dev score."""

    trial: FrozenTrial
    ensemble: int
    expected: float


def by_expected_score(
    trials: list[tuple[FrozenTrial, RunTimes]], seeds: int, most: int, jobs: int, budget_s: float
) -> list[Ranked]:
    """The trials, best first, by search score plus the gain of the largest ensemble (up to ``most``)
    whose retrainings and refits are estimated to fit ``budget_s``; the better-searched of equals."""
    ranked = []
    for trial, times in trials:
        size = largest_ensemble([times], seeds, most, jobs, budget_s)
        ranked.append(Ranked(trial, size, trial.value + ensemble_gain(size)))
    return sorted(ranked, key=lambda r: (-r.expected, -r.trial.value, r.trial.number))
