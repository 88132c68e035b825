"""``python -m study.replay``: decide the search's defaults on dev by replaying searches over a pool of
trainings (``study.pool``), as benchmarks of tabulated learning curves do.

The pool: ``--configs`` configurations drawn at random from the default search space, each trained
under three seeds, half A of dev choosing the epoch and half B judging. Seeds 1 and 2 are the trial's
seeds; seed 3 stands for ``study.best``'s retraining, whose model is the one kept, so a search is
judged by half B's score of its pick's third-seed model. Searches replayed from it answer:

- **seeds per trial**: at equal trainings, a search of 2K one-seed trials against one of K two-seed
  trials (the first K of the same draw);
- **--top**: of M trials, keep the best (top 1), or retrain the best 3 and keep the one whose
  retraining scores best on half A (top 3);
- **the median pruner's settings**: every setting of a grid replays the same random orders of the pool,
  reporting each epoch of the first seed's curve to Optuna's own ``MedianPruner`` and charging the
  epochs' recorded seconds, until the budget (half the pool's unpruned time) is spent; how soon each
  reaches random search's median best, and where each ends.

A gap between two arms counts only beyond its standard deviation over bootstrap resamplings of the
pool's configurations (``ner_core.ablation.verdict``). Random search stands in for TPE, and one worker
for several. The test split is never read.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from ner_core.ablation import verdict
from ner_core.data import load_corpus
from ner_core.errors import UserError
from ner_core.runtime import add_runtime_arguments, runtime_from_args
from ner_core.saving import write_report
from ner_core.spread import KEYS

from .pool import Training, build_pool, describe, draw_configs
from .space import SearchSpace
from .stored import DEFAULTS, STUDY_BASE

Pool = list[list[Training]]  # pool[i][j]: configuration i under seed j (j = 2: the retraining)
Arm = Callable[[Pool, list[int]], dict[str, float]]  # a search over a draw of configurations -> half B's scores

RETRAINING = 2  # the seed that stands for study.best's retraining
# (start-up trials, warm-up epochs, interval, minimum trials); the first is MedianPruner as study.run makes it
CURRENT_PRUNER = (DEFAULTS.pruner_startup_trials, DEFAULTS.warmup_epochs, 1, 1)
PRUNER_GRID = [
    CURRENT_PRUNER,
    *(s for s in itertools.product((2, 5, 10), (1, 3, 5), (1, 2), (1, 5)) if s != CURRENT_PRUNER),
]


def trial_value(pool: Pool, i: int, seeds: int) -> float:
    """What a study records for configuration i trained under ``seeds`` seeds: the mean of their half-A bests."""
    return statistics.fmean(t.best for t in pool[i][:seeds])


def kept(pool: Pool, i: int) -> dict[str, float]:
    """Half B's scores of configuration i's retraining: the model study.best would keep."""
    return pool[i][RETRAINING].judged


def best_of(pool: Pool, draw: list[int], seeds: int) -> int:
    return max(draw, key=lambda i: trial_value(pool, i, seeds))


def seeds_arms(k: int) -> dict[str, Arm]:
    """One seed per trial over a draw of 2k configurations, two seeds over its first k: equal trainings."""
    return {
        "1 seed": lambda pool, draw: kept(pool, best_of(pool, draw[: 2 * k], 1)),
        "2 seeds": lambda pool, draw: kept(pool, best_of(pool, draw[:k], 2)),
    }


def top_arms(m: int, seeds: int) -> dict[str, Arm]:
    """Top 1 against top 3 over a draw of m trials of ``seeds`` seeds each."""

    def top(n: int) -> Arm:
        def arm(pool: Pool, draw: list[int]) -> dict[str, float]:
            ranked = sorted(draw[:m], key=lambda i: -trial_value(pool, i, seeds))[:n]
            return kept(pool, max(ranked, key=lambda i: pool[i][RETRAINING].best))

        return arm

    return {"top 1": top(1), "top 3": top(3)}


def mean_scores(pool: Pool, arm: Arm, draws: list[list[int]]) -> dict[str, float]:
    return {k: statistics.fmean(arm(pool, d)[k] for d in draws) for k in KEYS}


def compare(pool: Pool, arms: dict[str, Arm], size: int, draws: int, boots: int, seed: int) -> dict[str, Any]:
    """Each arm's mean half-B scores over ``draws`` random draws of ``size`` configurations (the same
    draws for every arm), and the second arm's verdict against the first, with the noise of the gap:
    its standard deviation over ``boots`` resamplings of the pool's configurations."""
    rng = random.Random(seed)
    n = len(pool)
    sample = [rng.sample(range(n), size) for _ in range(draws)]
    means = {name: mean_scores(pool, arm, sample) for name, arm in arms.items()}
    (first, a), (second, b) = arms.items()
    gaps: dict[str, list[float]] = {k: [] for k in KEYS}
    for _ in range(boots):
        resampled = [pool[rng.randrange(n)] for _ in range(n)]
        on, off = mean_scores(resampled, b, sample), mean_scores(resampled, a, sample)
        for k in KEYS:
            gaps[k].append(on[k] - off[k])
    noise = {k: statistics.stdev(gaps[k]) for k in KEYS}
    scored = {name: {k: {"mean": m[k], "std": noise[k]} for k in KEYS} for name, m in means.items()}
    return {"means": means, "noise": noise, "verdict": verdict(scored[second], scored[first]), "of": second}


def replay_search(
    pool: Pool, order: list[int], seeds: int, pruner: optuna.pruners.BasePruner, budget: float
) -> list[tuple[float, float]]:
    """One search over the pool in ``order`` until ``budget`` seconds are spent: (time, best value so
    far) after each trial that completes within it. The pruner sees the first seed's curve, epoch by
    epoch, as ``study.objective`` reports it; a completed trial then trains its other seeds."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    clock, best, timeline = 0.0, -math.inf, []
    for i in order:
        first = pool[i][0]
        trial = study.ask()
        pruned = False
        for epoch, (value, seconds) in enumerate(zip(first.curve, first.seconds), start=1):
            clock += seconds
            trial.report(value, epoch)
            if trial.should_prune():
                pruned = True
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            clock += sum(t.cost for t in pool[i][1:seeds])
            value = trial_value(pool, i, seeds)
            study.tell(trial, value)
            best = max(best, value)
            if clock <= budget:
                timeline.append((clock, best))
        if clock >= budget:
            break
    return timeline


def best_at(timeline: list[tuple[float, float]], when: float) -> float:
    return max((b for t, b in timeline if t <= when), default=-math.inf)


def reached(timeline: list[tuple[float, float]], target: float) -> float:
    """When the search first held a value of at least ``target`` (infinity: never)."""
    return next((t for t, b in timeline if b >= target), math.inf)


def median_pruner(setting: tuple[int, int, int, int]) -> optuna.pruners.MedianPruner:
    startup, warmup, interval, least = setting
    return optuna.pruners.MedianPruner(startup, warmup, interval, n_min_trials=least)


def pruner_replay(pool: Pool, seeds: int, streams: int, seed: int) -> dict[str, Any]:
    """Every grid setting over the same ``streams`` random orders of the pool, against random search
    (no pruning): the budget, the target (random search's median best at the budget) and each
    setting's median best at the budget and median time to the target."""
    budget = sum(t.cost for c in pool for t in c[:seeds]) / 2
    rng = random.Random(seed)
    orders = [rng.sample(range(len(pool)), len(pool)) for _ in range(streams)]
    unpruned = [replay_search(pool, o, seeds, optuna.pruners.NopPruner(), budget) for o in orders]
    target = statistics.median(best_at(t, budget) for t in unpruned)
    rows = []
    for setting in PRUNER_GRID:
        runs = [replay_search(pool, o, seeds, median_pruner(setting), budget) for o in orders]
        times = [reached(t, target) for t in runs]
        rows.append(
            {
                "setting": dict(zip(("startup_trials", "warmup_epochs", "interval", "min_trials"), setting)),
                "median_best": statistics.median(best_at(t, budget) for t in runs),
                "median_time_to_target": statistics.median(times) / budget,
                "reached": sum(t <= budget for t in times) / streams,
            }
        )
    random_times = [reached(t, target) for t in unpruned]
    return {
        "budget_s": budget,
        "target": target,
        "random_median_time_to_target": statistics.median(random_times) / budget,
        "settings": rows,
    }


def choose_pruner(rows: list[dict[str, Any]], tolerance: float = 0.002) -> dict[str, Any]:
    """The rule written before the figures: of the settings whose median best at the budget is within
    ``tolerance`` of the highest, the one with the shortest median time to the target (the grid's
    first, the current default, where it ties)."""
    top = max(r["median_best"] for r in rows)
    near = [r for r in rows if r["median_best"] >= top - tolerance]
    return min(near, key=lambda r: r["median_time_to_target"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m study.replay",
        description="Train a pool of random configurations under three seeds (half of dev chooses, the "
        "other half judges), then replay searches over it to decide seeds per trial, --top and the median "
        "pruner's settings on dev. The test split is never read. Resumes an interrupted pool.",
        epilog="Example: python -m study.replay --data-dir data/chisiec --configs 16 --jobs 2 --threads 1 "
        "--out results/replay/chisiec",
    )
    parser.add_argument("--data-dir", help="corpus folder (default: $NER_DATA_DIR, else data/chisiec)")
    parser.add_argument("--configs", type=int, default=16, help="configurations in the pool (default 16)")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs=3,
        metavar="SEED",
        default=[42, 43, 44],
        help="the trial's two seeds and the retraining's (default 42 43 44)",
    )
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the draw of configurations (default 0)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the cut of dev into halves (default 0)")
    parser.add_argument("--max-epochs", type=int, default=STUDY_BASE.max_epochs, help="epochs (default: the study's)")
    parser.add_argument(
        "--patience", type=int, default=STUDY_BASE.patience, help="early stopping (default: the study's)"
    )
    parser.add_argument("--draws", type=int, default=2000, help="random draws per comparison (default 2000)")
    parser.add_argument("--boots", type=int, default=200, help="resamplings of the pool for the noise (default 200)")
    parser.add_argument("--streams", type=int, default=100, help="random orders per pruner setting (default 100)")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (default 1; each with --threads)")
    parser.add_argument("--out", default="results/replay", help="folder for the trainings and replay.json")
    add_runtime_arguments(parser)
    return parser.parse_args(argv)


def show(title: str, result: dict[str, Any]) -> None:
    print(f"\n{title}: half B's scores of the kept model, mean over the draws (noise: the gap's std)")
    for name, m in result["means"].items():
        print(f"  {name:<8} token macro-F1 {m['token_macro_f1']:.4f}  entity F1 {m['entity_f1']:.4f}")
    noise = result["noise"]
    print(
        f"  noise    token {noise['token_macro_f1']:.4f}  entity {noise['entity_f1']:.4f}; "
        f"{result['of']}: {result['verdict']}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        least = {"configs": 8, "jobs": 1, "draws": 1, "boots": 2, "streams": 1, "max_epochs": 1, "patience": 1}
        for name, low in least.items():
            if getattr(args, name) < low:
                raise UserError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(args, name)}")
        if len(set(args.seeds)) < 3:
            raise UserError("--seeds: give three different seeds")
        base = STUDY_BASE.replace(max_epochs=args.max_epochs, patience=args.patience)
        runtime = runtime_from_args(args)
        corpus = load_corpus(args.data_dir)
        space = SearchSpace()
        configs = draw_configs(space, base, args.configs, args.sample_seed)
        out = Path(args.out)
        print(
            f"{corpus.summary()}\npool: {args.configs} random configurations x seeds {' '.join(map(str, args.seeds))}, "
            f"{base.max_epochs} epochs (patience {base.patience}); dev cut in halves (split seed {args.split_seed}): "
            f"one chooses, the other judges; on {runtime}",
            flush=True,
        )
        pool = build_pool(configs, args.seeds, corpus, args.split_seed, runtime, out, args.jobs)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n = len(pool)
    k, m = n // 4, n // 2
    report: dict[str, Any] = {"args": vars(args), "runtime": runtime.record(), "configs": describe(configs, space)}
    report["seeds_per_trial"] = compare(pool, seeds_arms(k), 2 * k, args.draws, args.boots, args.sample_seed)
    show(f"seeds per trial: {2 * k} one-seed trials against {k} two-seed trials", report["seeds_per_trial"])
    report["top"] = {}
    for seeds in (1, 2):
        report["top"][seeds] = compare(pool, top_arms(m, seeds), m, args.draws, args.boots, args.sample_seed)
        show(f"--top, {m} trials of {seeds} seed(s) each", report["top"][seeds])
    report["pruner"] = {}
    for seeds in (1, 2):
        replayed = pruner_replay(pool, seeds, args.streams, args.sample_seed)
        chosen = choose_pruner(replayed["settings"])
        replayed["chosen"] = chosen["setting"]
        report["pruner"][seeds] = replayed
        print(
            f"\nmedian pruner, trials of {seeds} seed(s): budget {replayed['budget_s'] / 60:.1f} min (half the pool "
            f"unpruned), target {replayed['target']:.4f} (random search's median best at the budget), which random "
            f"search reaches at {replayed['random_median_time_to_target']:.0%} of it"
        )
        print("  startup warmup interval min  median best  median time to target  reached")
        for row in sorted(replayed["settings"], key=lambda r: (-r["median_best"], r["median_time_to_target"])):
            s = row["setting"]
            mark = "  <- chosen" if row is chosen else "  (current)" if row is replayed["settings"][0] else ""
            print(
                f"  {s['startup_trials']:>7} {s['warmup_epochs']:>6} {s['interval']:>8} {s['min_trials']:>3}  "
                f"{row['median_best']:>11.4f}  {row['median_time_to_target']:>21.0%}  {row['reached']:>7.0%}{mark}"
            )
    write_report(out / "replay.json", report)
    print(f"\nwrote {out / 'replay.json'}\nnext: docs/decisions.md says what each figure decides")
    return 0


if __name__ == "__main__":
    sys.exit(main())
