"""One worker's trial loop: start trials while the gate lets it, until the study is full or time is up."""

from __future__ import annotations

import random
import sys
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from .gate import NoRoom, TrialGate
from .objective import CAUGHT, Objective
from .stored import FINISHED
from .summary import trial_line


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run_trials(
    study: optuna.Study, objective: Objective, gate: TrialGate, deadline: float | None, bar: bool, lines: bool
) -> None:
    """Run trials in this process until the study holds ``gate.target`` finished ones, or until
    ``deadline`` (a ``time.monotonic()`` value; the objective stops a trial running then).

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

    ran: dict[str, Any] = {}  # the trial this worker runs, and what its objective raised
    # once a trial's end is stored: its checkpoint goes (any other callable objective keeps none)
    ended = [objective.ended] if isinstance(objective, Objective) else []

    def tracked(trial: optuna.Trial) -> float:
        ran.update(number=trial.number, error=None)
        try:
            return objective(trial)
        except BaseException as err:
            ran["error"] = err
            raise

    with progress:
        while gate.wait_for_room(study, deadline):
            ran.clear()
            try:
                study.optimize(tracked, n_trials=1, callbacks=[*ended, show], catch=CAUGHT)
            except NoRoom:
                time.sleep(random.uniform(0.1, 1.0))  # another worker took the last place; look again
            except Exception as err:
                # the objective's own error stops the worker; Optuna's, on a trial failed elsewhere, does not
                if "number" not in ran or err is ran["error"] or not failed_elsewhere(study, ran["number"]):
                    raise
                print(
                    f"note: trial {ran['number']} was failed by another worker while it ran here (no heartbeat "
                    "for the grace period: was this process stopped or starved?); going on with the next one",
                    file=sys.stderr,
                    flush=True,
                )


def failed_elsewhere(study: optuna.Study, number: int) -> bool:
    """Whether trial ``number``, running here, has been failed meanwhile by another worker.

    Optuna's tell then raises (which exception depends on where the trial was when it was failed),
    and the worker would die with it: instead it goes on, as the study's other workers do.
    """
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    return trial is not None and trial.state == TrialState.FAIL
