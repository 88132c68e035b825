"""``python -m ner_core.ablation``: the study's fixed settings, each switched off, judged on dev alone.

Dev is cut in two halves, A and B (``--split-seed``). Every arm trains one configuration under
``--seeds``; half A does what dev does in a study (it picks the best epoch, or is added to the
training text for the refit) and half B, which decided nothing, judges:

- ``base``: the configuration as given;
- ``no-embed-dropout``, ``no-bigrams``: the same with ``embed_dropout`` or ``bigram_dim`` set to 0;
- ``refit``: trained on train + A for the whole schedule, the last weights kept, as study.best refits.

Then, from the base arm's models: ensembles of each size (the mean over every subset of the seeds)
and the entity bias chosen on A by each metric, judged on B against 0. A difference between two arms
counts only beyond the larger of their standard deviations over the seeds (``verdict``). The test
split is never read.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import multiprocessing
import random
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .config import TrainConfig
from .data import Corpus, load_corpus
from .entity_bias import best_bias, dev_scores
from .errors import UserError
from .runtime import Runtime, add_runtime_arguments, runtime_from_args
from .saving import load_model, save_model, write_report
from .spread import KEYS, SplitScores, reusable
from .train import fit, result_metrics

ARMS = ("base", "no-embed-dropout", "no-bigrams", "refit")
SWITCHED_OFF = {"no-embed-dropout": "embed_dropout", "no-bigrams": "bigram_dim"}


def halves(corpus: Corpus, seed: int) -> tuple[Corpus, Corpus]:
    """Two corpora whose dev splits are the halves A and B of dev, drawn at random by ``seed``."""
    order = list(range(len(corpus.dev)))
    random.Random(seed).shuffle(order)
    cut = len(order) // 2
    a, b = ([corpus.dev[i] for i in sorted(part)] for part in (order[:cut], order[cut:]))
    return dataclasses.replace(corpus, dev=a), dataclasses.replace(corpus, dev=b)


def arm_config(base: TrainConfig, arm: str) -> TrainConfig:
    """The configuration an arm trains; UserError where the setting it switches off is off already."""
    if arm not in SWITCHED_OFF:
        return base
    name = SWITCHED_OFF[arm]
    if not getattr(base, name):
        raise UserError(f"--arms {arm}: the configuration's {name} is 0 already; leave that arm out")
    return base.replace(**{name: 0})


def train_arm(config: TrainConfig, runtime: Runtime, half_a: Corpus, folder: Path, refit: bool) -> Path:
    """One training: on train with half A picking the epoch, or (``refit``) on train + A, the whole
    schedule, the last weights kept."""
    data = half_a.with_dev_in_train() if refit else half_a
    result = fit(config, data, runtime=runtime, keep_last=refit)
    return save_model(folder, result, result_metrics(result, data))


def train_arms(jobs_list: list[tuple[TrainConfig, Path, bool]], runtime: Runtime, half_a: Corpus, jobs: int) -> None:
    """Every training not already saved, ``jobs`` at a time."""
    todo = [(c, f, r) for c, f, r in jobs_list if not reusable(f, c)]
    if len(todo) < len(jobs_list):
        print(f"reusing {len(jobs_list) - len(todo)} training(s) already saved", flush=True)
    with tqdm(total=len(todo), desc="training", unit="model", disable=None) as bar:
        if jobs == 1:
            for config, folder, refit in todo:
                train_arm(config, runtime, half_a, folder, refit)
                bar.update()
            return
        # spawn: a forked child would inherit torch's thread pool in an unusable state
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(train_arm, c, runtime, half_a, f, r) for c, f, r in todo]
            for future in futures:
                future.result()
                bar.update()


def summarize(scores: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and (sample) standard deviation of each score over the seeds."""
    return {
        k: {"mean": statistics.fmean(s[k] for s in scores), "std": statistics.stdev(s[k] for s in scores)} for k in KEYS
    }


def verdict(on: dict[str, dict[str, float]], off: dict[str, dict[str, float]]) -> str:
    """What a setting does, from the scores with it (``on``) and without (``off``): 'hurts' where it
    is behind on either metric by more than the larger of the two standard deviations, 'helps' where
    it is ahead on one by that much and behind on none, else 'level'."""
    ahead = behind = False
    for key in KEYS:
        gap = on[key]["mean"] - off[key]["mean"]
        noise = max(on[key]["std"], off[key]["std"])
        ahead |= gap > noise
        behind |= gap < -noise
    return "hurts" if behind else "helps" if ahead else "level"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ner_core.ablation",
        description="Train one configuration under several seeds with each of the study's fixed settings "
        "switched off (embedding dropout, bigrams) and as a refit, choosing on one half of dev and judging "
        "on the other; then ensembles of each size and the entity bias, judged the same way. The test split "
        "is never read.",
        epilog="Example: python -m ner_core.ablation --config results/bilstm-crf/retrained/trial-46-seed-0/config.json "
        "--data-dir data/chisiec --seeds 42 43 44 --jobs 2 --threads 1 --out results/ablation/chisiec",
    )
    parser.add_argument("--config", required=True, help="the configuration's JSON (a saved model's config.json)")
    parser.add_argument("--data-dir", help="corpus folder (default: $NER_DATA_DIR, else data/chisiec)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44], help="seeds (default 42 43 44)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="arms (default: all)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the cut of dev into halves (default 0)")
    parser.add_argument(
        "--folds", type=int, default=1, help="1: half A chooses, B judges; 2: and the other way round too (default 1)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (default 1; each with --threads)")
    parser.add_argument("--out", default="results/ablation", help="folder for the models and ablation.json")
    add_runtime_arguments(parser)
    return parser.parse_args(argv)


def fold_halves(corpus: Corpus, split_seed: int, fold: int) -> tuple[Corpus, Corpus]:
    """Fold 0 chooses on half A and judges on B; fold 1 the other way round."""
    a, b = halves(corpus, split_seed)
    return (a, b) if fold == 0 else (b, a)


def fold_folder(out: Path, fold: int) -> Path:
    return out if fold == 0 else out / f"fold-{fold}"


def judge_fold(
    folders: dict[tuple[str, int], Path],
    arms: list[str],
    seeds: list[int],
    half_a: Corpus,
    half_b: Corpus,
    runtime: Runtime,
) -> dict[str, Any]:
    """One fold's figures on its half B: each arm's score per seed, the base ensembles' scores per
    size (mean over every subset of the seeds), and the entity bias chosen on A by each metric."""
    base = [load_model(folders["base", s], runtime) for s in seeds]
    runs = {}
    for arm in arms:
        models = base if arm == "base" else [load_model(folders[arm, s], runtime) for s in seeds]
        judged = SplitScores(models, half_b.dev)
        runs[arm] = [judged.score((i,)) for i in range(len(models))]
    on_b = SplitScores(base, half_b.dev)
    sizes = {
        k: [on_b.score(group) for group in itertools.combinations(range(len(base)), k)] for k in range(1, len(base) + 1)
    }
    on_a, judged_b = dev_scores(base, half_a.dev, True), dev_scores(base, half_b.dev, True)
    bias = {}
    for key in KEYS:
        chosen = best_bias(on_a, key)
        bias[key] = {"bias": chosen, "at_bias": judged_b[chosen], "at_0": judged_b[0.0]}
    return {"runs": runs, "sizes": sizes, "entity_bias": bias}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.jobs < 1:
            raise UserError(f"--jobs must be at least 1, got {args.jobs}")
        if args.folds not in (1, 2):
            raise UserError(f"--folds must be 1 or 2, got {args.folds}")
        if len(set(args.seeds)) < 2:
            raise UserError("--seeds: give two or more different seeds (a spread needs them)")
        if "base" not in args.arms:
            raise UserError("--arms: the other arms are judged against base; include it")
        config = TrainConfig.load(args.config)
        configs = {arm: arm_config(config, arm) for arm in args.arms}
        runtime = runtime_from_args(args)
        corpus = load_corpus(args.data_dir)
        half_a, half_b = halves(corpus, args.split_seed)
        out = Path(args.out)
        print(
            f"{corpus.summary()}\ndev cut in halves of {len(half_a.dev):,} and {len(half_b.dev):,} sentences, "
            f"{args.folds} fold(s): one chooses, the other judges; seeds {' '.join(map(str, args.seeds))}; "
            f"on {runtime}",
            flush=True,
        )
        folders = {
            (f, arm, s): fold_folder(out, f) / arm / f"seed-{s}"
            for f in range(args.folds)
            for arm in args.arms
            for s in args.seeds
        }
        for f in range(args.folds):
            planned = [(configs[a].replace(seed=s), d, a == "refit") for (g, a, s), d in folders.items() if g == f]
            train_arms(planned, runtime, fold_halves(corpus, args.split_seed, f)[0], args.jobs)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    folds = []
    for f in range(args.folds):
        mine = {(a, s): d for (g, a, s), d in folders.items() if g == f}
        folds.append(judge_fold(mine, args.arms, args.seeds, *fold_halves(corpus, args.split_seed, f), runtime))
    report: dict[str, Any] = {"args": vars(args), "config": config.to_dict(), "runtime": runtime.record()}
    report["halves"] = [len(half_a.dev), len(half_b.dev)]
    report["folds"] = folds
    n = len(args.seeds) * args.folds
    arms = {arm: summarize([r for fold in folds for r in fold["runs"][arm]]) for arm in args.arms}
    report["arms"] = arms
    print(
        f"\non the judging half, mean ± std over {n} trainings ({args.folds} fold(s) x {len(args.seeds)} seeds); "
        "what the setting does, beyond the larger std"
    )
    print(f"{'arm':<17} {'token macro-F1':>16} {'entity F1':>16}  the setting")
    report["verdicts"] = {}
    for arm, sc in arms.items():
        row = "  ".join(f"{sc[k]['mean']:.4f} ± {sc[k]['std']:.4f}" for k in KEYS)
        said = ""
        if arm != "base":  # the refit is the setting switched on; the other arms switch one off
            said = verdict(sc, arms["base"]) if arm == "refit" else verdict(arms["base"], sc)
            report["verdicts"][arm] = said
            said = f"{'refit' if arm == 'refit' else SWITCHED_OFF[arm]}: {said}"
        print(f"{arm:<17} {row}  {said}", flush=True)

    report["ensembles"] = []
    print("\nbase ensembles on the judging half, mean over every subset of the seeds (and the folds)")
    for k in range(1, len(args.seeds) + 1):
        scored = [s for fold in folds for s in fold["sizes"][k]]
        row = {"size": k, **{key: statistics.fmean(s[key] for s in scored) for key in KEYS}}
        report["ensembles"].append(row)
        print(f"size {k}: token macro-F1 {row['token_macro_f1']:.4f}  entity F1 {row['entity_f1']:.4f}")

    print(
        f"\nentity bias, the ensemble of all {len(args.seeds)}: chosen on one half by each metric, judged on the other"
    )
    for f, fold in enumerate(folds):
        for key, b in fold["entity_bias"].items():
            at, zero = b["at_bias"], b["at_0"]
            print(
                f"fold {f}, by {key}: bias {b['bias']:g}; token macro-F1 {at['token_macro_f1']:.4f} "
                f"(at 0: {zero['token_macro_f1']:.4f})  entity F1 {at['entity_f1']:.4f} "
                f"(at 0: {zero['entity_f1']:.4f})",
                flush=True,
            )
    write_report(out / "ablation.json", report)
    print(f"\nwrote {out / 'ablation.json'}\nnext: docs/decisions.md says what each figure decides")
    return 0


if __name__ == "__main__":
    sys.exit(main())
