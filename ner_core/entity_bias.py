"""Choose ``entity_bias`` on dev: the bias toward the entity tags under which trained models tag best.

A CRF trained for likelihood is cautious with what it saw rarely: on CHisIEC the kept models find
entities at precision 0.86-0.88 and recall 0.79-0.83, and recall only half of the 13 test BOOK
titles. Adding a bias to every tag but O before Viterbi trades some precision for recall; how much
is worth it is measured on dev, by models that were trained on train alone, never on test.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from .data import Sentence
from .saving import SavedModel
from .spread import KEYS, SplitScores

# Biases tried (in units of the emission scores). 0 is the model as trained; the negatives let dev
# say when fewer entities would be better.
GRID = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def dev_scores(
    models: Sequence[SavedModel], sentences: list[Sentence], together: bool
) -> dict[float, dict[str, float]]:
    """Token macro-F1 and entity F1 on ``sentences`` under each bias of GRID: of the ensemble of the
    models (``together``), or the models' mean. The models must be trainings of one configuration on
    one vocabulary; each one's scores are computed once."""
    scores = SplitScores(list(models), sentences)
    groups = [tuple(range(len(models)))] if together else [(i,) for i in range(len(models))]
    return {bias: {key: statistics.fmean(scores.score(g, bias)[key] for g in groups) for key in KEYS} for bias in GRID}


def best_bias(scores: dict[float, dict[str, float]], key: str) -> float:
    """The bias with the best ``key`` score (the study's metric); of equal ones, the nearest to 0 (the
    models as trained)."""
    return max(scores, key=lambda bias: (scores[bias][key], -abs(bias)))
