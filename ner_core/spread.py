"""``python -m ner_core.spread``: how far ensembles of one configuration spread from seed to seed.

``study.best`` keeps three models, one per seed, each an ensemble of refits; the study goal bounds
the standard deviation of their three test scores. This measures how often a configuration meets
such a bound, and how the ensemble size moves it, without touching the test split unless asked:

1. train ``--members`` models of the configuration under seeds seed, seed + 1, ... as a refit is
   trained (the whole schedule, the last weights kept, nothing chosen on dev), on the training
   split alone, so that dev can judge them (members already in ``--out`` are reused);
2. for each ensemble size k, draw ``--draws`` random ways to split the members into three disjoint
   ensembles of k, score every ensemble on dev (``--test``: on test too), and report the
   ensembles' mean scores, their standard deviation, the mean standard deviation of the three, and
   the share of draws whose three token macro-F1 scores have a std within ``--bound``.

Each member's scores on a split are computed once; an ensemble then costs one Viterbi pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import random
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .config import TrainConfig
from .data import Batch, Corpus, EncodedSplit, Sentence, load_corpus
from .errors import UserError
from .metrics import entity_scores, token_scores
from .model import entity_biased, mean_paths
from .runtime import Runtime, add_runtime_arguments, runtime_from_args
from .saving import SavedModel, load_model, save_model, write_report
from .train import EVAL_BATCH_CHARS, EVAL_BATCH_SIZE, fit, result_metrics

KEYS = ("token_macro_f1", "entity_f1")
THREE = 3  # study.best keeps three models (its --seeds default), the study goal's "mean of 3 seeds"


def member_folder(out: Path, seed: int) -> Path:
    return out / "members" / f"seed-{seed}"


def train_member(config: TrainConfig, runtime: Runtime, corpus: Corpus, folder: Path) -> Path:
    """One member: the whole schedule on the training split, last weights kept (as study.best refits)."""
    train_only = dataclasses.replace(corpus, dev=[])
    result = fit(config, train_only, runtime=runtime, keep_last=True)
    return save_model(folder, result, result_metrics(result, train_only))


def reusable(folder: Path, config: TrainConfig) -> bool:
    """Whether ``folder`` holds a member of ``config`` already; UserError if it holds another's."""
    if not (folder / "config.json").is_file():
        return False
    found = TrainConfig.load(folder / "config.json")
    differ = [k for k, v in config.to_dict().items() if getattr(found, k) != v]
    if differ:
        what = ", ".join(differ)
        raise UserError(f"{folder}: a member of another configuration (differs in {what}); use another --out")
    return True


def train_members(
    config: TrainConfig, seeds: list[int], runtime: Runtime, corpus: Corpus, out: Path, jobs: int
) -> None:
    """Every member not already in ``out``, ``jobs`` at a time."""
    todo = [s for s in seeds if not reusable(member_folder(out, s), config.replace(seed=s))]
    if len(todo) < len(seeds):
        print(f"reusing {len(seeds) - len(todo)} member(s) found in {out / 'members'}", flush=True)
    if not todo:
        return
    # disable=None: a bar in a terminal only; a log file gets the plain lines
    with tqdm(total=len(todo), desc="training members", unit="model", disable=None) as bar:
        if jobs == 1:
            for seed in todo:
                train_member(config.replace(seed=seed), runtime, corpus, member_folder(out, seed))
                bar.update()
            return
        # spawn: a forked child would inherit torch's thread pool in an unusable state
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [
                pool.submit(train_member, config.replace(seed=s), runtime, corpus, member_folder(out, s)) for s in todo
            ]
            for future in futures:
                future.result()
                bar.update()


class SplitScores:
    """Scores of any ensemble of the members on one split, from each member's scores computed once."""

    def __init__(self, members: list[SavedModel], sentences: list[Sentence]):
        first = members[0]
        self.tagset, self.sentences, self.members = first.tagset, sentences, len(members)
        self.entity_bias = first.config.entity_bias
        self.gold = [s.tags for s in sentences]
        device = next(first.model.parameters()).device
        encoded = EncodedSplit(sentences, first.vocab, first.tagset)
        groups = encoded.bucketed(EVAL_BATCH_SIZE, batch_chars=EVAL_BATCH_CHARS)
        self.batches = [encoded.batch(group) for group in groups]
        with torch.inference_mode():
            for member in members:
                member.model.eval()
            # shape: per batch [members, batch, time, tags], kept on the CPU, where Viterbi runs
            self.emissions = [
                torch.stack([m.model.emissions(*on(b, device)).float().cpu() for m in members]) for b in self.batches
            ]
            self.moves = [tuple(t.cpu() for t in m.model.crf.scores(decoding=True)) for m in members]
        self.cache: dict[tuple[tuple[int, ...], float], dict[str, float]] = {}

    @torch.inference_mode()
    def score(self, members: tuple[int, ...], entity_bias: float | None = None) -> dict[str, float]:
        """Token macro-F1 and entity F1 of the ensemble of these members (by index), decoding with
        ``entity_bias`` (default: the members' own)."""
        bias = self.entity_bias if entity_bias is None else entity_bias
        picked = tuple(sorted(members))
        key = (picked, bias)
        if key not in self.cache:
            pick = torch.tensor(picked)
            moves = [self.moves[i] for i in picked]
            predicted: list[list[str]] = [[] for _ in self.sentences]
            for batch, emissions in zip(self.batches, self.emissions):
                for i, ids in zip(batch.index, mean_paths(entity_biased(emissions[pick], bias), moves, batch.mask)):
                    predicted[i] = [self.tagset.tags[t] for t in ids]
            gold = self.gold
            scores = {**token_scores(gold, predicted), **entity_scores(gold, predicted, self.tagset.scheme)}
            self.cache[key] = {k: float(scores[k]) for k in KEYS}
        return self.cache[key]


def on(batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch's tokens, mask and lengths, as a model on ``device`` reads them."""
    moved = batch.to(device)
    return moved.tokens, moved.mask, moved.lengths


def spread(scores: SplitScores, size: int, draws: int, bound: float, seed: int) -> dict[str, Any]:
    """``draws`` random splits of the members into three disjoint ensembles of ``size``: the
    ensembles' mean and std of each score, the three's mean std, and the share within ``bound``."""
    rng = random.Random(seed)
    threes = []
    for _ in tqdm(range(draws), desc=f"ensembles of {size}", unit="draw", leave=False, disable=None):
        order = rng.sample(range(scores.members), THREE * size)
        threes.append([scores.score(tuple(order[j * size : (j + 1) * size])) for j in range(THREE)])
    ensembles = [s for (picked, bias), s in scores.cache.items() if len(picked) == size and bias == scores.entity_bias]
    out: dict[str, Any] = {"size": size, "draws": draws, "ensembles_scored": len(ensembles)}
    for key in KEYS:
        stds = [statistics.stdev(e[key] for e in three) for three in threes]
        out[key] = {
            "mean": statistics.fmean(e[key] for three in threes for e in three),
            "ensemble_std": statistics.pstdev(e[key] for e in ensembles),
            "std_of_three_mean": statistics.fmean(stds),
            "std_of_three_median": statistics.median(stds),
            "share_within_bound": sum(s <= bound for s in stds) / draws,
        }
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ner_core.spread",
        description="Train several models of one configuration as study.best refits them (on train only), then "
        "score random ways of grouping them into three ensembles of each size on dev: how much the three "
        "kept models' scores spread, and how often their token macro-F1 std is within a bound.",
        epilog="Example: python -m ner_core.spread --config results/bilstm-crf/retrained/trial-36-seed-0/config.json "
        "--members 15 --sizes 1 3 5 --jobs 2 --threads 1",
    )
    parser.add_argument(
        "--config", required=True, help="the configuration's JSON (a saved model's config.json, or your own)"
    )
    parser.add_argument("--data-dir", help="corpus folder (default: $NER_DATA_DIR, else data/chisiec)")
    parser.add_argument(
        "--members", type=int, default=15, help="models to train, seeds seed, seed + 1, ... (default 15)"
    )
    parser.add_argument(
        "--seed", type=int, help="the first member's seed (default: the configuration's); draws are seeded by it too"
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1, 3, 5],
        help="ensemble sizes; three disjoint ensembles of the largest must fit in --members (default 1 3 5)",
    )
    parser.add_argument(
        "--draws", type=int, default=500, help="random groupings into three ensembles per size (default 500)"
    )
    parser.add_argument(
        "--bound", type=float, default=0.01, help="the std bound to count draws within (default 0.01, the study goal's)"
    )
    parser.add_argument(
        "--test", action="store_true", help="score the test split too (information only: choose on dev)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="members trained at once (default 1; each with --threads)")
    parser.add_argument("--out", default="results/spread", help="folder for the members and spread.json")
    add_runtime_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        for name in ("members", "draws", "jobs"):
            if getattr(args, name) < 1:
                raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
        if min(args.sizes) < 1:
            raise UserError(f"--sizes must be at least 1, got {min(args.sizes)}")
        if THREE * max(args.sizes) > args.members:
            raise UserError(
                f"--sizes {max(args.sizes)} needs {THREE * max(args.sizes)} members (three disjoint ensembles), "
                f"--members is {args.members}"
            )
        if not args.bound > 0:  # nan too
            raise UserError(f"--bound must be positive, got {args.bound:g}")
        config = TrainConfig.load(args.config)
        first = config.seed if args.seed is None else args.seed
        seeds = list(range(first, first + args.members))
        runtime = runtime_from_args(args)
        corpus = load_corpus(args.data_dir, with_test=args.test)
        out = Path(args.out)
        print(
            f"{corpus.summary()}\n{args.members} members of {args.config}, seeds {first}-{seeds[-1]}, on {runtime}",
            flush=True,
        )
        train_members(config, seeds, runtime, corpus, out, args.jobs)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    members = [load_model(member_folder(out, s), runtime) for s in seeds]
    splits = [("dev", corpus.dev), *([("test", corpus.test)] if args.test and corpus.test else [])]
    report: dict[str, Any] = {"args": vars(args), "config": config.to_dict(), "seeds": seeds}
    report["runtime"] = runtime.record()
    for name, sentences in splits:
        scores = SplitScores(members, sentences)
        rows = [spread(scores, k, args.draws, args.bound, first) for k in sorted(args.sizes)]
        report[name] = rows
        print(
            f"\n{name}: {args.draws} draws of three disjoint ensembles per size, from {args.members} members"
            f"\n{'size':>4} {'ensembles':>9} {'token macro-F1':>14} {'ens. std':>8} {'std of 3':>8} "
            f"{f'<= {args.bound:g}':>8} {'entity F1':>9} {'ens. std':>8} {'std of 3':>8}",
            flush=True,
        )
        for row in rows:
            t, e = row["token_macro_f1"], row["entity_f1"]
            print(
                f"{row['size']:>4} {row['ensembles_scored']:>9} {t['mean']:>14.4f} {t['ensemble_std']:>8.4f} "
                f"{t['std_of_three_mean']:>8.4f} {t['share_within_bound']:>8.1%} {e['mean']:>9.4f} "
                f"{e['ensemble_std']:>8.4f} {e['std_of_three_mean']:>8.4f}",
                flush=True,
            )
    write_report(out / "spread.json", report)
    print(
        f"\nwrote {out}/spread.json; the members are in {out}/members (a rerun with more --members reuses them)"
        f"\nnext: python -m ner_core.ensemble --out {out}/ensemble "
        + " ".join(str(member_folder(out, s)) for s in seeds[:3])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
