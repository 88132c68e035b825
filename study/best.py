"""``python -m study.best``: retrain the study's best trials under several seeds, choose one by its
mean dev score, and test only the chosen one.

One trial's dev score is partly its seed's luck. So the top ``--top`` trials (by their search
score) are retrained under ``--seeds`` seeds each, with early stopping on dev; the configuration
with the best mean dev score is chosen, and dev then chooses one more thing, the kept models' bias
toward the entity tags when decoding (``--entity-bias``: 0 by default; ``auto``, the one under which
the retrainings tag dev best). The retrainings are the kept models: with ``--test`` each is scored
on the test split exactly once (no other model touches it). With ``--refit`` the chosen
configuration is trained once more under each seed on train + dev, for the whole schedule, and those
models are kept and tested instead. The model of the seed whose retraining scored best on dev is saved
where ``python -m ner_core.predict`` can load it. With ``--refit --ensemble N`` each kept model is an
Ensemble of N refits under different seeds, tagging by their mean scores; ``--time-budget`` makes N as large as
is estimated to fit the minutes given (38 by default) and ranks the trials by search score plus the
dev gain of the ensembles that fit them (``study.choice``). ``--jobs`` trains in parallel (one per
core by default). Each test reading is recorded (``ner_core.ledger``, ``study.readings``), and a
second ``--test`` on one study is refused unless ``--retest``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ner_core import ledger
from ner_core.config import TrainConfig
from ner_core.data import Corpus, EncodedSplit
from ner_core.entity_bias import GRID, best_bias, dev_scores
from ner_core.errors import UserError
from ner_core.metrics import OBJECTIVE_KEYS
from ner_core.model import with_entity_bias
from ner_core.runtime import Runtime, add_runtime_arguments, decide_runtime, fallback
from ner_core.saving import copy_model, load_model, save_ensemble, save_with_entity_bias
from ner_core.train import evaluate
from storage import DEFAULT_URL, ENV_STORAGE, choose_storage, open_storage

from .choice import by_expected_score
from .fingerprint import VectorsPrint, study_vectors
from .readings import check_unread, keep_readings, study_readings, test_file_sha256
from .retrain import Candidate, tasks_for, train_all
from .scores import aggregate, bias_trade_line, entity_bias_line, markdown, summary_lines
from .space import config_for
from .stored import DEFAULT_STUDY, StudySettings, adopt_prints, load_study, results_dir, study_corpus, study_settings
from .summary import next_commands
from .timing import RunTimes, estimate_seconds, largest_ensemble, run_times, shape_speeds
from .workers import auto_jobs

# Refits per kept model (with --refit): 1. In the dev ablation, ensembles of 3 scored below single
# models on CHisIEC's held-out dev in token macro-F1, by 0.0008 (docs/decisions.md, Ensemble size).
# With --ensemble N, --time-budget makes N smaller where it does not fit.
DEFAULT_ENSEMBLE = 1
# The refit is off by default: in the dev ablation on CCLUE it scored below the retrainings on held-out
# dev by more than the seeds' spread (docs/decisions.md, The refit).
DEFAULT_REFIT = False
# The kept models' bias toward entity tags when decoding: 0, the models as trained. "auto" (chosen on
# dev) failed its rule in the dev ablation: chosen on one half of CCLUE's dev by token macro-F1, it
# scored lower on the other half than 0 did (docs/decisions.md, The entity bias).
DEFAULT_ENTITY_BIAS = "0"
# Minutes for the retrainings and refits unless told otherwise: what make best has always given, so
# that a default study (75 minutes) and study.best end within 2 hours on 2 cores (docs/decisions.md,
# The time budgets).
DEFAULT_TIME_BUDGET = 38.0


def study_files(args: argparse.Namespace, study: optuna.Study) -> tuple[Corpus, str | None]:
    """The study's corpus (the one rule: --data-dir, $NER_DATA_DIR, the study's own folder) and the path
    of its vectors, each checked against what the study stores; a study made before it stored them
    takes the fingerprints of these, with a note."""
    kept = StudySettings.from_attrs(study.user_attrs, study.study_name)
    corpus, found = study_corpus(study.study_name, args.data_dir, kept, with_test=args.test)
    if kept is None or kept.corpus is None:  # not made by the suite, or before it stored fingerprints
        if kept is not None:
            print(adopt_prints(study, found, args.embeddings and VectorsPrint.of(args.embeddings)), file=sys.stderr)
        return corpus, args.embeddings
    return corpus, study_vectors(study.study_name, kept.embeddings, args.embeddings)


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The complete trials, the best search score first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise UserError(f"study '{study.study_name}' has no complete trial yet; run python -m study.run first")
    return sorted(complete, key=lambda t: (-t.value, t.number))


def trial_runtime(args: argparse.Namespace, study: optuna.Study, trial: FrozenTrial) -> tuple[Runtime, str | None]:
    """The runtime the options ask for, taking the trial's thread count and precision where not given
    (float sums depend on both: the same ones reproduce the trial's dev score with its seed)."""
    runtime = decide_runtime(args.device, args.threads or trial.user_attrs.get("threads"), args.precision)
    if args.precision != "auto":
        return runtime, None
    # older studies kept the precision in their configuration
    ran = trial.user_attrs.get("precision") or study.user_attrs.get("base_config", {}).get("precision")
    return fallback(ran, runtime, f"trial {trial.number} ran")


def keep(run: dict[str, Any], trial: int, index: int, out: Path, refit: bool, entity_bias: float = 0.0) -> str:
    """The folder of the model kept for one seed: its retraining, its refit, or the Ensemble of its
    refits, which is written here; with an ``entity_bias`` other than 0, a copy decoding with it."""
    folders = run["refit_folders"] if refit else [run["folder"]]
    if len(folders) == 1 and not entity_bias:
        return folders[0]
    members = [load_model(f) for f in folders]
    if len(members) == 1:
        return str(save_with_entity_bias(out / "kept" / f"trial-{trial}-seed-{index}", members[0], entity_bias))
    members = [replace(m, config=m.config.replace(entity_bias=entity_bias)) for m in members]
    return str(save_ensemble(out / "ensemble" / f"trial-{trial}-seed-{index}", members, folders))


def chosen_entity_bias(
    setting: str, chosen: Candidate, corpus: Corpus, together: bool
) -> tuple[float, dict[float, dict[str, float]] | None]:
    """The kept models' entity bias: the number given, or with "auto" the bias under which the
    chosen trial's retrainings (trained on train alone) score best on dev by the study's metric,
    with both dev scores under each bias: of the ensemble of the retrainings (``together``: where the
    kept models are ensembles), else their mean."""
    if setting != "auto":
        return float(setting), None
    models = [load_model(r["folder"], chosen.runtime) for r in chosen.runs]
    scores = dev_scores(models, corpus.dev, together)
    return best_bias(scores, OBJECTIVE_KEYS[chosen.config.objective]), scores


def scored_on_test(folder: str, runtime: Runtime, corpus: Corpus, entity_bias: float | None = None) -> dict[str, Any]:
    """The saved model's scores on the test split (decoding with ``entity_bias`` where given)."""
    assert corpus.test is not None
    saved = load_model(folder, runtime)
    if entity_bias is not None:
        with_entity_bias(saved.model, entity_bias)
    return evaluate(saved.model, EncodedSplit(corpus.test, saved.vocab, saved.tagset), corpus.test, saved.tagset)


TrialTimer = Callable[[FrozenTrial, TrainConfig], RunTimes | None]


def trial_timer(study: optuna.Study, corpus: Corpus) -> TrialTimer:
    """A trial's estimated retraining and refit seconds, at its shape's median speed in ``study``
    (study.timing), or None where it recorded no timings."""
    speeds = shape_speeds(study.trials)
    refit_tokens = sum(len(s.chars) for s in (*corpus.train, *corpus.dev))
    return lambda trial, config: run_times(trial, config, refit_tokens, speeds)


def chosen_trials(
    args: argparse.Namespace,
    complete: list[FrozenTrial],
    base: TrainConfig,
    times_of: TrialTimer,
) -> list[FrozenTrial]:
    """The ``--top`` trials to retrain from ``complete`` (best first): the best by search score, or with
    ``--time-budget`` (and ``--cost-aware``) the best by search score plus the dev gain of the
    ensembles that fit the budget (study.choice), with a line where that passes over the best one."""
    if args.time_budget is None or not args.refit or not args.cost_aware:
        return complete[: args.top]
    timed = [(t, times_of(t, config_for(t.params, base))) for t in complete]
    if any(times is None for _, times in timed):  # planned_minutes says so
        return complete[: args.top]
    ranked = by_expected_score(timed, args.seeds, args.ensemble, args.jobs, args.time_budget * 60)
    first = next(r for r in ranked if r.trial is complete[0])
    if ranked[0] is not first:
        print(
            f"--time-budget {args.time_budget:g} min: trial {ranked[0].trial.number} (dev {ranked[0].trial.value:.4f}, "
            f"ensembles of {ranked[0].ensemble} fit) chosen over trial {first.trial.number} (dev "
            f"{first.trial.value:.4f}, ensembles of {first.ensemble}): expected dev {ranked[0].expected:.4f} "
            f"against {first.expected:.4f} with the ensembles' gain (--no-cost-aware: by dev alone)"
        )
    return [r.trial for r in ranked[: args.top]]


def planned_minutes(args: argparse.Namespace, candidates: list[Candidate], times_of: TrialTimer) -> str:
    """With ``--time-budget``, lower ``args.ensemble`` to the largest size estimated to fit it (saying
    so); returns the estimate for the line announcing the work (empty when the trials lack timings)."""
    times = [times_of(c.trial, c.config) for c in candidates]
    known = [t for t in times if t is not None]
    if len(known) < len(times):
        if args.time_budget is not None:
            print(
                f"note: trial {candidates[times.index(None)].trial.number} recorded no timings (a study made by an "
                f"older version): --time-budget has nothing to go by; ensembles of {args.ensemble}",
                file=sys.stderr,
            )
        return ""

    def minutes(ensemble: int) -> float:
        return estimate_seconds(known, args.seeds, ensemble, args.jobs, args.refit) / 60

    if args.time_budget is not None:
        most = args.ensemble
        args.ensemble = largest_ensemble(known, args.seeds, most, args.jobs, args.time_budget * 60)
        if args.ensemble < most:
            print(
                f"--time-budget {args.time_budget:g} min: ensembles of {args.ensemble}, not {most} "
                f"(estimated {minutes(most):.0f} min)"
                + ("" if minutes(args.ensemble) <= args.time_budget else ", though even these pass the budget")
            )
    return f", about {minutes(args.ensemble):.0f} min (estimated from the search's own timing)"


def number_or(word: str, cast: Callable[[str], Any], means: Any) -> Callable[[str], Any]:
    """An argparse type: a number, or ``word``, which stands for ``means`` (--jobs auto, --time-budget none)."""

    def parse(text: str) -> Any:
        if text == word:
            return means
        try:
            return cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{word} or a number, not {text!r}") from None

    return parse


def check_options(args: argparse.Namespace) -> None:
    """The options' own checks (a UserError naming the one at fault); fills in --ensemble's default."""
    for name in ("top", "seeds", "ensemble", "jobs"):
        if isinstance(getattr(args, name), int) and getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.time_budget is not None and not args.time_budget > 0:  # nan too
        raise UserError(f"--time-budget must be positive, got {args.time_budget:g}")
    if args.entity_bias != "auto":
        try:
            TrainConfig(entity_bias=float(args.entity_bias))
        except ValueError:
            raise UserError(f"--entity-bias must be auto or a number, got {args.entity_bias!r}") from None
    if args.ensemble is None:
        args.ensemble = DEFAULT_ENSEMBLE
    elif args.ensemble > 1 and not args.refit:
        raise UserError("--ensemble combines refits on train + dev; give --refit too")
    if args.retest and not args.test:
        raise UserError("--retest reads the test split again; give --test too")


def candidate(args: argparse.Namespace, study: optuna.Study, trial: FrozenTrial, base: TrainConfig) -> Candidate:
    """A trial to retrain, with its configuration and runtime (saying so where the runtime differs)."""
    runtime, note = trial_runtime(args, study, trial)
    if note:
        print(note, file=sys.stderr)
    print(f"trial {trial.number} (dev {trial.value:.4f}): {json.dumps(trial.params)}")
    return Candidate(trial, config_for(trial.params, base), runtime)


def tested_once(chosen: Candidate, corpus: Corpus, bias: float, ensemble: int) -> dict[str, Any] | None:
    """Each kept model scored on the test split, once: the only models that ever see it. Where they are
    ensembles each member is scored too (decoding with the same bias); returns the members' aggregate."""
    for run in chosen.runs:
        run["test"] = scored_on_test(run["kept_folder"], chosen.runtime, corpus)
        if ensemble > 1:
            run["member_tests"] = [scored_on_test(f, chosen.runtime, corpus, bias) for f in run["refit_folders"]]
        print(
            f"seed {run['seed']}: test token macro-F1 {run['test']['token_macro_f1']:.4f}, "
            f"entity F1 {run['test']['entity_f1']:.4f}" + (" (ensemble)" if ensemble > 1 else "")
        )
    return aggregate([m for r in chosen.runs for m in r["member_tests"]]) if ensemble > 1 else None


def parser() -> argparse.ArgumentParser:
    """study.best's options."""
    parser = argparse.ArgumentParser(
        prog="python -m study.best",
        description="Retrain the study's top trials under several seeds (early stopping on dev), choose the "
        "configuration with the best mean dev score, report it, and with --test score each of its models on "
        "the test split exactly once.",
        epilog="Example: python -m study.best --test   (then: python -m ner_core.predict results/bilstm-crf/model)",
    )
    parser.add_argument("--study-name", default=DEFAULT_STUDY, help=f"study to read (default {DEFAULT_STUDY})")
    parser.add_argument("--storage", help=f"storage URL (default: ${ENV_STORAGE}, else {DEFAULT_URL})")
    parser.add_argument(
        "--data-dir",
        help="corpus folder (default: $NER_DATA_DIR, else the study's own); it must hold the corpus the study "
        "was made on, in this folder or another",
    )
    parser.add_argument(
        "--embeddings",
        metavar="PATH",
        help="where the study's pretrained vectors are on this machine (default: the path the study was made "
        "with); the file must be the same, byte for byte",
    )
    parser.add_argument(
        "--top",
        type=int,
        default=1,
        help="retrain the TOP best trials and choose the one with the best mean dev (default 1; 3 chose no "
        "better-testing pick in three studies, at 3x the retraining: docs/decisions.md, --top)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="retrainings with seeds seed, seed+1, ... (default 3)")
    parser.add_argument(
        "--ensemble",
        type=int,
        metavar="N",
        help="refits per kept model: each seed's kept model is an ensemble of N refits under seeds seed, "
        "seed + SEEDS, seed + 2 SEEDS, ..., tagging by their mean scores; with --test each single model is "
        f"scored too (default {DEFAULT_ENSEMBLE}: one refit per seed; "
        "docs/decisions.md, Ensemble size)",
    )
    parser.add_argument(
        "--time-budget",
        type=number_or("none", float, None),
        default=DEFAULT_TIME_BUDGET,
        metavar="MINUTES",
        help="with --refit, make the ensembles as large as fit: the largest size up to --ensemble whose trainings are "
        f"estimated to end within MINUTES, from the study's timing of the chosen trial's shape (default "
        f"{DEFAULT_TIME_BUDGET:g}, so that a default study and this end within 2 hours on 2 cores; none: no limit)",
    )
    parser.add_argument(
        "--cost-aware",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --time-budget, choose the trials by search dev score plus the dev gain measured for the "
        "ensemble size that fits the budget, so that a slightly lower-scoring trial that trains fast enough "
        "for large ensembles can win over one that fits only small ones (default on; --no-cost-aware: by "
        "search dev score alone; docs/guide.md, Which trial, within a time budget)",
    )
    parser.add_argument(
        "--entity-bias",
        default=DEFAULT_ENTITY_BIAS,
        metavar="auto|B",
        help="the kept models' bias toward entity tags when decoding (config entity_bias): auto tries "
        f"{', '.join(f'{b:g}' for b in GRID)} on dev with the retrainings (trained on train alone; their "
        "ensemble where the kept models are ensembles) and keeps the one that scores best by the study's "
        "metric; a number sets it; "
        f"0: the models as trained (default {DEFAULT_ENTITY_BIAS}; docs/decisions.md, The entity bias)",
    )
    parser.add_argument(
        "--jobs",
        type=number_or("auto", int, "auto"),
        default="auto",
        help="trainings at once, each with --threads (default auto: one per GPU where they train on GPUs, else "
        "one per CPU core the trial's threads take, at most 8)",
    )
    parser.add_argument(
        "--test",
        action="store_true",
        help="score each kept model of the chosen trial on the test split once; recorded in the study and in "
        "results/test-readings.jsonl, and refused for a study whose test split study.best has read before",
    )
    parser.add_argument(
        "--retest", action="store_true", help="with --test: read the test split even though it was read before"
    )
    parser.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_REFIT,
        help="once chosen, train the configuration again under each seed on train + dev (12%% more "
        "sentences on CHisIEC; the whole schedule, last weights) and test and keep those models "
        "(default off: the models trained on train alone are tested and kept; docs/decisions.md, The refit)",
    )
    parser.add_argument("--out", help="output folder (default results/<study>)")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars or epoch lines (bars show in a terminal only)"
    )
    add_runtime_arguments(
        parser, threads_help="torch threads (default: as many as the trial used, so that its seed reproduces it)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    where = choose_storage(args.storage)
    if note := where.password_note():
        print(note, file=sys.stderr)
    try:
        check_options(args)
        study = load_study(open_storage(where.url), args.study_name, where.url)
        base = study_settings(study).base
        complete = ranked_trials(study)  # a study without one says so before the corpus is read
        if args.jobs == "auto":
            args.jobs = auto_jobs(args.device, args.threads or complete[0].user_attrs.get("threads") or 1)
        corpus, embeddings = study_files(args, study)
        test_sha = test_file_sha256(corpus)
        readings = study_readings(study, test_sha) if test_sha else []
        if args.test:
            check_unread(args.study_name, readings, args.retest)
        times_of = trial_timer(study, corpus)
        candidates = [candidate(args, study, trial, base) for trial in chosen_trials(args, complete, base, times_of)]
        out = Path(args.out) if args.out else results_dir(args.study_name)
        took = planned_minutes(args, candidates, times_of)
        work = tasks_for(candidates, args.seeds)
        # With one candidate the choice is known: its refits train alongside the retrainings.
        refit_now = args.refit and len(candidates) == 1
        if refit_now:
            work += tasks_for(candidates, args.seeds, refit=True, ensemble=args.ensemble)
        refits = f" and refitting it on train + dev {args.seeds * args.ensemble} time(s)"
        print(
            f"retraining {len(candidates)} trial(s) x {args.seeds} seed(s){refits if refit_now else ''} "
            f"on {candidates[0].runtime}, {args.jobs} at a time{took}"
        )
        train_all(work, corpus, out, args.jobs, args.quiet, embeddings)
        chosen = max(candidates, key=lambda c: c.mean_dev)  # the earlier (better-searched) one of equals
        if len(candidates) > 1:
            print(
                "mean dev over seeds: "
                + ", ".join(f"trial {c.trial.number} {c.mean_dev:.4f}" for c in candidates)
                + f"; chosen: trial {chosen.trial.number}"
            )
        if args.refit and not refit_now:
            print(f"refitting trial {chosen.trial.number} on train + dev under {args.seeds * args.ensemble} seed(s)")
            tasks = tasks_for([chosen], args.seeds, refit=True, ensemble=args.ensemble)
            train_all(tasks, corpus, out, args.jobs, args.quiet, embeddings)
        key = OBJECTIVE_KEYS[chosen.config.objective]
        together = args.ensemble > 1 and len(chosen.runs) > 1
        bias, bias_scores = chosen_entity_bias(args.entity_bias, chosen, corpus, together)
        bias_line = entity_bias_line(bias, bias_scores, key, len(chosen.runs), together)
        print(bias_line)
        trade_line = bias_trade_line(bias, bias_scores)
        for index, run in enumerate(chosen.runs):
            run["kept_folder"] = keep(run, chosen.trial.number, index, out, args.refit, bias)
        split = "test" if args.test else "dev"
        singles = tested_once(chosen, corpus, bias, args.ensemble) if args.test else None
        if args.test:
            reading = ledger.record(
                "study.best",
                corpus,
                [r["kept_folder"] for r in chosen.runs],
                [r["test"] for r in chosen.runs],
                args.study_name,
            )
            readings = keep_readings(study, readings, reading)
        readings_line = ledger.count_line(readings) if test_sha else ""
        summary = aggregate([r[split] for r in chosen.runs])
        best_run = max(chosen.runs, key=lambda r: r["dev"][key])
        model_dir = copy_model(best_run["kept_folder"], out / "model")
        report = {
            "study": args.study_name,
            "trial": chosen.trial.number,
            "search_value": chosen.trial.value,
            "params": chosen.trial.params,
            "config": chosen.config.to_dict(),
            "split": split,
            "refit": args.refit,
            "ensemble": args.ensemble,
            "entity_bias": bias,
            "dev_by_entity_bias": None if bias_scores is None else {f"{b:g}": s for b, s in bias_scores.items()},
            "test_readings": [asdict(r) for r in readings],
            "seeds": [r["seed"] for r in chosen.runs],
            "runtime": chosen.runtime.record(),
            "candidates": [
                {"trial": c.trial.number, "search_value": c.trial.value, "mean_dev": c.mean_dev} for c in candidates
            ],
            "summary": summary,
            "single_models": singles,
            "runs": chosen.runs,
            "model": str(model_dir),
        }
        (out / "best.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (out / "report.md").write_text(
            markdown(
                args.study_name,
                chosen,
                candidates,
                split,
                summary,
                args.refit,
                args.ensemble,
                singles,
                bias_line,
                [trade_line, readings_line],
            ),
            encoding="utf-8",
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print()
    print(
        "\n".join(
            summary_lines(
                chosen.trial.number,
                split,
                summary,
                singles,
                len(chosen.runs),
                args.refit,
                args.ensemble,
                [trade_line, readings_line],
            )
        )
    )
    which = (
        f"{'ensemble of refits' if args.ensemble > 1 else 'refit'} on train + dev, the seed whose retraining "
        "scored best on dev"
        if args.refit
        else "best dev of the seeds"
    )
    print(f"\nwrote {out}/best.json, {out}/report.md; model ({which}) in {model_dir}")
    print(f"next: echo '太祖遣使至洛陽' | python -m ner_core.predict {model_dir}")
    if not args.test:
        print(f"      {next_commands(args.study_name, where)[0]}   # scores the test split once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
