"""The chosen trials trained under several seeds: retrainings on train with early stopping on dev,
refits on train + dev for the whole schedule, ``jobs`` at a time, each saved in its own folder."""

from __future__ import annotations

import multiprocessing
import statistics
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial
from tqdm import tqdm

from ner_core.config import TrainConfig
from ner_core.data import Corpus
from ner_core.metrics import OBJECTIVE_KEYS
from ner_core.runtime import Runtime
from ner_core.saving import save_model
from ner_core.train import fit, result_metrics


@dataclass
class Candidate:
    """One trial's configuration, retrained under the seeds."""

    trial: FrozenTrial
    config: TrainConfig
    runtime: Runtime
    # per seed: seed, best_epoch, dev, folder; refit_folders once refit (the seed's own refit first)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mean_dev(self) -> float:
        key = OBJECTIVE_KEYS[self.config.objective]
        return statistics.fmean(r["dev"][key] for r in self.runs)


def epoch_lines(trial: int, seed: int) -> Callable[[str], None]:
    """Prints each epoch's line of one retraining (above any progress bar)."""
    return lambda line: tqdm.write(f"trial {trial} seed {seed}  {line}")


def retrain(
    config: TrainConfig,
    runtime: Runtime,
    corpus: Corpus,
    folder: Path,
    log: Callable[[str], None] | None = None,
    refit: bool = False,
    embeddings: str | None = None,
) -> dict[str, Any]:
    """Train one configuration under its seed and save it in ``folder``: on train with early stopping
    on dev, or with ``refit`` on train + dev for the whole schedule, keeping the last weights; with
    the study's pretrained vectors where it has them, as its trials had."""
    data = corpus.with_dev_in_train() if refit else corpus
    result = fit(
        config, data, runtime=runtime, progress=log is not None, log=log, keep_last=refit, embeddings=embeddings
    )
    save_model(folder, result, result_metrics(result, data))
    return {"seed": config.seed, "best_epoch": result.best_epoch, "dev": result.best_dev, "folder": str(folder)}


@dataclass
class Task:
    """One training of a candidate under one of the seeds: a retraining on train, or a refit on train + dev."""

    candidate: Candidate
    index: int  # which seed: the configuration's seed + index
    refit: bool = False
    seeds: int = 1  # the seeds of the retrainings: a refit with index i belongs to the run of seed i % seeds

    @property
    def config(self) -> TrainConfig:
        return self.candidate.config.replace(seed=self.candidate.config.seed + self.index)

    def folder(self, out: Path) -> Path:
        kind = "refit" if self.refit else "retrained"
        return out / kind / f"trial-{self.candidate.trial.number}-seed-{self.index}"


def tasks_for(candidates: list[Candidate], seeds: int, refit: bool = False, ensemble: int = 1) -> list[Task]:
    """The retrainings of each candidate under ``seeds`` seeds, or its refits: ``ensemble`` per seed,
    the run of seed i (index i) getting the refits with indices i, i + seeds, i + 2 * seeds, ..."""
    if not refit:
        return [Task(c, i) for c in candidates for i in range(seeds)]
    return [Task(c, i, True, seeds) for c in candidates for i in range(seeds * ensemble)]


def train_all(
    tasks: list[Task], corpus: Corpus, out: Path, jobs: int, quiet: bool, embeddings: str | None = None
) -> None:
    """Every task, ``jobs`` at a time, a line as each ends, each with the pretrained ``embeddings``.
    A retraining's run joins its candidate's runs (in seed order); a refit, which must come after its
    retraining in ``tasks``, joins that run's ``refit_folders``, the models that are then tested and
    kept."""
    # disable=None: a bar in a terminal only; a log file gets the plain lines
    bar = tqdm(total=len(tasks), desc="training", unit="run", disable=True if quiet else None)

    def done(task: Task, run: dict[str, Any]) -> None:
        candidate = task.candidate
        if task.refit:
            candidate.runs[task.index % task.seeds].setdefault("refit_folders", []).append(run["folder"])
            what = f"refit on train + dev for {run['best_epoch']} epochs"
        else:
            candidate.runs.append(run)
            what = f"best epoch {run['best_epoch']}, dev {run['dev'][OBJECTIVE_KEYS[candidate.config.objective]]:.4f}"
        bar.write(f"trial {candidate.trial.number}, seed {run['seed']}: {what}")
        bar.update()

    def arguments(task: Task, log: Callable[[str], None] | None = None) -> tuple:
        return (task.config, task.candidate.runtime, corpus, task.folder(out), log, task.refit, embeddings)

    jobs = max(1, min(jobs, len(tasks)))  # no more processes than trainings
    with bar:
        if jobs == 1:
            for task in tasks:
                log = None if quiet else epoch_lines(task.candidate.trial.number, task.config.seed)
                done(task, retrain(*arguments(task, log)))
            return
        # spawn: a forked child would inherit torch's thread pool in an unusable state
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [(task, pool.submit(retrain, *arguments(task))) for task in tasks]
            for task, future in futures:
                done(task, future.result())
