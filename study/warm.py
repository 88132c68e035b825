"""``--warm-start``: an earlier study's best configurations, queued as a new study's first trials.

A new study learns nothing from an earlier one by itself: moving from a CPU study to a GPU one, or
from CHisIEC to another corpus, it would draw its first trials at random. With ``--warm-start
STUDY`` it first trains the K best complete configurations of STUDY, then searches as usual (TPE
counts them among its start-up trials). Each is queued with its values of the settings the new
study searches (the settings it holds fixed keep the new study's values); one with a value outside
the new search space is named and skipped. The queued trials carry the user attribute
``warm_start`` (the study and trial they come from, and the value they had there), and the new
study the attribute ``warm_start`` (the study, its storage, the trials queued and those skipped).
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from ner_core.errors import UserError
from storage import describe, open_storage

from .space import PARAMS, SearchSpace, config_for, params_of
from .stored import load_study, study_settings

ATTR = "warm_start"  # the user attribute of a warm-started study, and of each trial it queued
# --warm-start-top's default: as many as the default start-up trials (5), whose place they take (TPE counts them)
WARM_TOP = 5


@dataclass(frozen=True)
class WarmStart:
    """The earlier study's configurations a new study starts from, and those it cannot take."""

    study: str
    storage: str  # as shown: no password
    queued: list[tuple[FrozenTrial, dict]]  # the earlier trial, and its parameters in the new space
    skipped: list[str]  # "trial N (lr 0.1 not in --lr-range 0.0001 0.01)", one per configuration outside

    def note(self) -> str | None:
        """The one line naming the skipped configurations (None: none was)."""
        if not self.skipped:
            return None
        return f"note: --warm-start: skipped {len(self.skipped)} outside the search space: " + "; ".join(self.skipped)

    def enqueue(self, study: optuna.Study) -> None:
        """Queue the configurations as the study's next trials, and store where they came from."""
        for trial, params in self.queued:
            origin = {"study": self.study, "trial": trial.number, "value": trial.value}
            study.enqueue_trial(params, user_attrs={ATTR: origin}, skip_if_exists=True)
        study.set_user_attr(
            ATTR,
            {
                "study": self.study,
                "storage": self.storage,
                "trials": [t.number for t, _ in self.queued],
                "skipped": self.skipped,
            },
        )


def warm_start(name: str, url: str | None, top: int, space: SearchSpace) -> WarmStart:
    """The ``top`` best distinct complete configurations of study ``name`` in storage ``url``, in the
    terms of ``space``. UserError, in one line, when there is no such study or it has no complete trial."""
    source = load_study(open_storage(url, heartbeat=False, create=False), name, url)
    base = study_settings(source).base
    complete = source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise UserError(f"--warm-start: study '{name}' in {describe(url)} has no complete trial to start from")
    best_first = sorted(complete, key=lambda t: t.value, reverse=source.direction.name == "MAXIMIZE")
    queued: list[tuple[FrozenTrial, dict]] = []
    skipped: list[str] = []
    seen: set[tuple] = set()
    for trial in best_first:
        if len(queued) + len(skipped) == top:
            break
        config = config_for(trial.params, base)
        params = params_of(config, space)
        if tuple(params.items()) in seen:  # a retried trial, or the same draw twice
            continue
        seen.add(tuple(params.items()))
        if outside := space.outside(config):
            values = ", ".join(
                f"{n} {getattr(config, n):g} not in {PARAMS[n].flag} {' '.join(f'{v:g}' for v in space.ranges[n])}"
                for n in outside
            )
            skipped.append(f"trial {trial.number} ({values})")
        else:
            queued.append((trial, params))
    return WarmStart(name, describe(url), queued, skipped)
