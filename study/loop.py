"""One worker's trial loop: start trials while the gate lets it, until the study is full or time is up."""

from __future__ import annotations

import random
import sys
import time

import optuna
from optuna.trial import FrozenTrial
from tqdm import tqdm

from .gate import NoRoom, TrialGate
from .objective import CAUGHT, Objective
from .stored import FINISHED
from .summary import trial_line


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run_trials(
    study: optuna.Study, objective: Objective, gate: TrialGate, timeout: float | None, bar: bool, lines: bool
) -> None:
    """Run trials in this process until the study holds ``gate.target`` finished ones (or ``timeout``).

    ``bar``: a progress bar over the study's finished trials (in a terminal only); ``lines``: a line
    per finished trial.
    """
    if finished(study) >= gate.target:
        return
    progress = tqdm(
        total=gate.target,
        initial=finished(study),
        desc=f"study {study.study_name}",
        unit="trial",
        disable=None if bar else True,  # None: no bar where stderr is not a terminal (a log file)
    )

    def show(study: optuna.Study, trial: FrozenTrial) -> None:
        progress.n = min(finished(study), gate.target)
        progress.refresh()
        if lines:
            progress.write(trial_line(study, trial))
            sys.stdout.flush()

    deadline = None if timeout is None else time.monotonic() + timeout
    with progress:
        while gate.wait_for_room(study, deadline):
            try:
                study.optimize(objective, n_trials=1, callbacks=[show], catch=CAUGHT)
            except NoRoom:
                time.sleep(random.uniform(0.1, 1.0))  # another worker took the last place; look again
