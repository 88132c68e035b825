"""``python -m study.best``: retrain the best trial's configuration under several seeds, test once.

Each retrained model is scored on the test split exactly once (with --test); the model with
the best dev score is saved where ``python -m ner_core.predict`` can load it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from ner_core.config import TrainConfig
from ner_core.data import EncodedSplit, load_corpus
from ner_core.errors import UserError
from ner_core.metrics import format_per_type
from ner_core.runtime import Runtime, add_runtime_arguments, decide_runtime, fallback
from ner_core.saving import save_model
from ner_core.train import evaluate, fit, result_metrics
from storage import DEFAULT_URL, ENV_STORAGE, choose_storage, open_storage

from .space import config_for
from .stored import DEFAULT_STUDY, load_study, results_dir, study_settings

HEADLINE = ("token_macro_f1", "token_accuracy", "entity_precision", "entity_recall", "entity_f1", "entity_macro_f1")


def best_config(study: optuna.Study) -> tuple[FrozenTrial, TrainConfig]:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise UserError(f"study '{study.study_name}' has no complete trial yet; run python -m study.run first")
    return study.best_trial, config_for(study.best_trial.params, study_settings(study).base)


def trial_runtime(args: argparse.Namespace, study: optuna.Study, trial: FrozenTrial) -> tuple[Runtime, str | None]:
    """The runtime the options ask for, taking the trial's thread count and precision where not given
    (float sums depend on both: the same ones reproduce the trial's dev score with its seed)."""
    runtime = decide_runtime(args.device, args.threads or trial.user_attrs.get("threads"), args.precision)
    if args.precision != "auto":
        return runtime, None
    # older studies kept the precision in their configuration
    ran = trial.user_attrs.get("precision") or study.user_attrs.get("base_config", {}).get("precision")
    return fallback(ran, runtime, f"trial {trial.number} ran")


def epoch_lines(seed: int) -> Callable[[str], None]:
    """Prints each epoch's line of the retraining under ``seed`` (above any progress bar)."""
    return lambda line: tqdm.write(f"seed {seed}  {line}")


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation of each headline score and each type's P/R/F1."""
    out: dict[str, Any] = {key: mean_std([r[key] for r in runs]) for key in HEADLINE}
    types = sorted({t for r in runs for t in r["per_type"]})
    out["per_type"] = {
        t: {m: mean_std([r["per_type"].get(t, {}).get(m, 0.0) for r in runs]) for m in ("precision", "recall", "f1")}
        | {"support": runs[0]["per_type"].get(t, {}).get("support", 0)}
        for t in types
    }
    return out


def markdown(
    study_name: str, trial_number: int, config: TrainConfig, seeds: list[int], split: str, scores: dict[str, Any]
) -> str:
    def ms(x: dict[str, float]) -> str:
        return f"{x['mean']:.4f} ± {x['std']:.4f}"

    lines = [
        f"# Study `{study_name}`: best configuration, retrained",
        "",
        f"Trial {trial_number}; retrained with seeds {', '.join(map(str, seeds))}; "
        f"scores on **{split}** as mean ± sample std over {len(seeds)} runs.",
        "",
        "```json",
        json.dumps(config.to_dict(), indent=2, sort_keys=True),
        "```",
        "",
        "| score | value |",
        "|---|---|",
        *[f"| {key.replace('_', ' ')} | {ms(scores[key])} |" for key in HEADLINE],
        "",
        "| entity type | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
        *[
            f"| {t} | {ms(r['precision'])} | {ms(r['recall'])} | {ms(r['f1'])} | {r['support']} |"
            for t, r in scores["per_type"].items()
        ],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study.best",
        description="Retrain the study's best configuration under several seeds (early stopping on dev), "
        "report dev scores, and with --test score each model on the test split exactly once.",
        epilog="Example: python -m study.best --test   (then: python -m ner_core.predict results/bilstm-crf/model)",
    )
    parser.add_argument("--study-name", default=DEFAULT_STUDY, help=f"study to read (default {DEFAULT_STUDY})")
    parser.add_argument("--storage", help=f"storage URL (default: ${ENV_STORAGE}, else {DEFAULT_URL})")
    parser.add_argument("--data-dir", help="corpus folder (default: the one the study was run on)")
    parser.add_argument("--seeds", type=int, default=3, help="retrainings with seeds seed, seed+1, ... (default 3)")
    parser.add_argument("--test", action="store_true", help="score each retrained model on the test split once")
    parser.add_argument("--out", help="output folder (default results/<study>)")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars or epoch lines (bars show in a terminal only)"
    )
    add_runtime_arguments(
        parser, threads_help="torch threads (default: as many as the trial used, so that its seed reproduces it)"
    )
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    where = choose_storage(args.storage)
    if note := where.password_note():
        print(note, file=sys.stderr)
    try:
        if args.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {args.seeds}")
        study = load_study(open_storage(where.url), args.study_name, where.url)
        trial, config = best_config(study)
        corpus = load_corpus(args.data_dir or study.user_attrs.get("data_dir"), with_test=args.test)
        out = Path(args.out) if args.out else results_dir(args.study_name)
        runtime, note = trial_runtime(args, study, trial)
        print(f"trial {trial.number} (dev {trial.value:.4f}): {json.dumps(trial.params)}")
        if note:
            print(note, file=sys.stderr)
        print(f"retraining on {runtime}")
        seeds = [config.seed + i for i in range(args.seeds)]
        runs, best = [], None
        # disable=None: bars in a terminal only; a log file gets the plain lines
        for seed in tqdm(seeds, desc="retraining", unit="seed", disable=True if args.quiet else None):
            log = None if args.quiet else epoch_lines(seed)
            result = fit(config.replace(seed=seed), corpus, runtime=runtime, progress=not args.quiet, log=log)
            test = None
            if args.test:
                assert corpus.test is not None
                test = evaluate(
                    result.model, EncodedSplit(corpus.test, result.vocab, result.tagset), corpus.test, result.tagset
                )
            scores = test if test is not None else result.best_dev
            runs.append({"seed": seed, "best_epoch": result.best_epoch, "dev": result.best_dev, "test": test})
            tqdm.write(
                f"seed {seed}: best epoch {result.best_epoch}, dev {result.best_value:.4f}, "
                f"{'test' if test else 'dev'} token macro-F1 {scores['token_macro_f1']:.4f} "
                f"entity F1 {scores['entity_f1']:.4f}"
            )
            if best is None or result.best_value > best[0].best_value:
                best = (result, result_metrics(result, corpus, test))
        assert best is not None
        split = "test" if args.test else "dev"
        summary = aggregate([r[split] for r in runs])
        model_dir = save_model(out / "model", best[0], best[1])
        report = {
            "study": args.study_name,
            "trial": trial.number,
            "search_value": trial.value,
            "params": trial.params,
            "config": config.to_dict(),
            "split": split,
            "seeds": seeds,
            "runtime": runtime.record(),
            "summary": summary,
            "runs": runs,
            "model": str(model_dir),
        }
        (out / "best.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (out / "report.md").write_text(
            markdown(args.study_name, trial.number, config, seeds, split, summary), encoding="utf-8"
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\n{split} scores over {len(seeds)} seeds (mean ± std):")
    for key in HEADLINE:
        print(f"  {key:<18} {summary[key]['mean']:.4f} ± {summary[key]['std']:.4f}")
    print(
        format_per_type(
            {
                t: {**{m: r[m]["mean"] for m in ("precision", "recall", "f1")}, "support": r["support"]}
                for t, r in summary["per_type"].items()
            }
        )
    )
    print(f"\nwrote {out}/best.json, {out}/report.md; model (best dev of the seeds) in {model_dir}")
    print(f"next: echo '太祖遣使至洛陽' | python -m ner_core.predict {model_dir}")
    if not args.test:
        name = [] if args.study_name == DEFAULT_STUDY else ["--study-name", args.study_name]
        command = shlex.join(["python", "-m", "study.best", "--test", *name, *where.command_args()])
        print(f"      {command}   # scores the test split once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
