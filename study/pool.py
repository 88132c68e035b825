"""A pool of trainings to replay searches on: configurations drawn at random from the search space,
each trained under several seeds, dev cut in halves.

Half A of dev does what dev does in a study (it picks each training's epoch, and its per-epoch score
is the learning curve the pruner would see); half B, which decided nothing, judges the kept model.
Each training is written to its own JSON file as it ends, so an interrupted pool resumes where it
stopped. The test split is never read. ``study.replay`` replays searches over the pool.
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from tqdm import tqdm

from ner_core.ablation import halves
from ner_core.config import TrainConfig
from ner_core.data import Corpus, EncodedSplit
from ner_core.errors import UserError
from ner_core.runtime import Runtime
from ner_core.saving import write_report
from ner_core.spread import KEYS
from ner_core.train import evaluate, fit

from .space import SearchSpace, params_of


@dataclass(frozen=True)
class Training:
    """One configuration trained under one seed: its learning curve on half A and its score on B."""

    config: int  # the configuration's index in the pool
    seed: int
    curve: list[float]  # half A's objective after each epoch run (early stopping ends it)
    seconds: list[float]  # each epoch's wall time, training and scoring half A
    judged: dict[str, float]  # half B's scores of the kept model (the epoch half A chose)

    @property
    def best(self) -> float:
        """Half A's score of the kept model: the trial value a study would record."""
        return max(self.curve)

    @property
    def cost(self) -> float:
        return sum(self.seconds)


def draw_configs(space: SearchSpace, base: TrainConfig, count: int, seed: int) -> list[TrainConfig]:
    """``count`` configurations drawn by Optuna's random sampler from ``space`` over ``base``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    draws = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.suggest(draws.ask(), base) for _ in range(count)]


def train_one(config: TrainConfig, index: int, runtime: Runtime, half_a: Corpus, half_b: Corpus, path: Path) -> None:
    """Train ``config`` on train with half A choosing the epoch; write the Training to ``path``."""
    result = fit(config, half_a, runtime=runtime)
    judged = evaluate(result.model, EncodedSplit(half_b.dev, result.vocab, half_b.tagset), half_b.dev, half_b.tagset)
    record = {
        "config": index,
        "seed": config.seed,
        "curve": [e.objective for e in result.history],
        "seconds": [round(e.seconds, 3) for e in result.history],
        "judged": {k: float(judged[k]) for k in KEYS},
        "settings": config.to_dict(),
    }
    write_report(path, record)


def training_path(out: Path, index: int, seed: int) -> Path:
    return out / "trainings" / f"config-{index:03d}-seed-{seed}.json"


def load_training(path: Path, config: TrainConfig) -> Training | None:
    """The Training saved at ``path``, or None if there is none; UserError if it trained another
    configuration (another pool's folder)."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.pop("settings") != config.to_dict():
        raise UserError(f"{path}: a training of another configuration (another pool); use another --out")
    return Training(**record)


def build_pool(
    configs: list[TrainConfig],
    seeds: list[int],
    corpus: Corpus,
    split_seed: int,
    runtime: Runtime,
    out: Path,
    jobs: int,
) -> list[list[Training]]:
    """Every configuration's trainings, one per seed (``pool[i][j]``: configuration i, seed j), training
    those not saved in ``out`` yet, ``jobs`` at a time."""
    half_a, half_b = halves(corpus, split_seed)
    (out / "trainings").mkdir(parents=True, exist_ok=True)
    planned = [(c.replace(seed=s), i) for i, c in enumerate(configs) for s in seeds]
    todo = [(c, i) for c, i in planned if load_training(training_path(out, i, c.seed), c) is None]
    if len(todo) < len(planned):
        print(f"reusing {len(planned) - len(todo)} training(s) already saved in {out}", flush=True)
    with tqdm(total=len(todo), desc="pool", unit="training", disable=None) as bar:
        if jobs == 1:
            for config, i in todo:
                train_one(config, i, runtime, half_a, half_b, training_path(out, i, config.seed))
                bar.update()
        else:
            # spawn: a forked child would inherit torch's thread pool in an unusable state
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as workers:
                futures = [
                    workers.submit(train_one, c, i, runtime, half_a, half_b, training_path(out, i, c.seed))
                    for c, i in todo
                ]
                for future in futures:
                    future.result()
                    bar.update()
    found = {(i, c.seed): load_training(training_path(out, i, c.seed), c) for c, i in planned}
    return [[found[i, s] for s in seeds] for i in range(len(configs))]  # type: ignore[misc]


def describe(configs: list[TrainConfig], space: SearchSpace) -> list[dict[str, Any]]:
    """Each configuration's searched values, for the report."""
    return [params_of(c, space) for c in configs]
