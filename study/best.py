"""``python -m study.best``: retrain the study's best trials under several seeds, choose one by its
mean dev score, and test only the chosen one.

One trial's dev score is partly its seed's luck. So the top ``--top`` trials (by their search
score) are retrained under ``--seeds`` seeds each, with early stopping on dev; the configuration
with the best mean dev score is chosen, and dev then chooses one more thing, the kept models' bias
toward the entity tags when decoding (``--entity-bias``: by default the one under which the
retrainings tag dev best). Dev has then done its job, so (unless ``--no-refit``) the chosen
configuration is trained once more under each seed on train + dev, for the whole schedule, and
those models are the ones kept: with ``--test`` each is scored on the test split exactly once (no
other model touches it). The model of the seed whose retraining scored best on dev is saved where
``python -m ner_core.predict`` can load it. With ``--ensemble N`` each kept model is an Ensemble of
N refits under different seeds, tagging by their mean scores; ``--time-budget`` makes N as large as
is estimated to fit the minutes given and ranks the trials by search score plus the dev gain of the
ensembles that fit them (``study.choice``). ``--jobs`` trains in parallel.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from ner_core.config import TrainConfig
from ner_core.data import Corpus, EncodedSplit, load_corpus
from ner_core.entity_bias import GRID, best_bias, dev_scores
from ner_core.errors import UserError
from ner_core.metrics import OBJECTIVE_KEYS, format_per_type, token_spread_by_tag
from ner_core.model import with_entity_bias
from ner_core.runtime import Runtime, add_runtime_arguments, decide_runtime, fallback
from ner_core.saving import copy_model, load_model, save_ensemble, save_model, save_with_entity_bias
from ner_core.train import evaluate, fit, result_metrics
from storage import DEFAULT_URL, ENV_STORAGE, choose_storage, open_storage

from .choice import by_expected_score
from .space import config_for
from .stored import DEFAULT_STUDY, load_study, results_dir, study_settings
from .summary import next_commands
from .timing import RunTimes, estimate_seconds, largest_ensemble, run_times, shape_speeds

# On dev, ensembles of 3 raised token macro-F1 and entity F1 over single models and narrowed their
# spread; ensembles of 5 did both again over 3, and of 10 over 5 (README "One model or an ensemble?",
# "Three or five?", "Five or ten?"). --time-budget makes them smaller where they do not fit.
DEFAULT_ENSEMBLE = 10
# The kept models' bias toward entity tags when decoding: chosen on dev ("auto"). It passed the rule set
# for it before the measurement (README "A bias toward entities"): in 100 2-fold checks on dev, dev
# token macro-F1 +0.0043 and dev entity F1 -0.0036 (at most -0.005 allowed); it had failed the first,
# cruder check (one split by parity, on another study: entity F1 -0.012).
DEFAULT_ENTITY_BIAS = "auto"
HEADLINE = ("token_macro_f1", "token_accuracy", "entity_precision", "entity_recall", "entity_f1", "entity_macro_f1")


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
) -> dict[str, Any]:
    """Train one configuration under its seed and save it in ``folder``: on train with early stopping
    on dev, or with ``refit`` on train + dev for the whole schedule, keeping the last weights."""
    data = corpus.with_dev_in_train() if refit else corpus
    result = fit(config, data, runtime=runtime, progress=log is not None, log=log, keep_last=refit)
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


def train_all(tasks: list[Task], corpus: Corpus, out: Path, jobs: int, quiet: bool) -> None:
    """Every task, ``jobs`` at a time, a line as each ends. A retraining's run joins its candidate's
    runs (in seed order); a refit, which must come after its retraining in ``tasks``, joins that run's
    ``refit_folders``, the models that are then tested and kept."""
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
        return (task.config, task.candidate.runtime, corpus, task.folder(out), log, task.refit)

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


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation of each headline score and each type's P/R/F1, and the
    tags that make the runs' token macro-F1 differ (``token_spread_by_tag``)."""
    out: dict[str, Any] = {key: mean_std([r[key] for r in runs]) for key in HEADLINE}
    out["token_spread_by_tag"] = token_spread_by_tag([r["per_tag"] for r in runs])
    types = sorted({t for r in runs for t in r["per_type"]})
    out["per_type"] = {
        t: {m: mean_std([r["per_type"].get(t, {}).get(m, 0.0) for r in runs]) for m in ("precision", "recall", "f1")}
        | {"support": runs[0]["per_type"].get(t, {}).get("support", 0)}
        for t in types
    }
    return out


def leading_tags(rows: list[dict[str, Any]], cover: float = 0.8, most: int = 5) -> tuple[list[dict[str, Any]], float]:
    """The first of ``token_spread_by_tag``'s rows that carry ``cover`` of the variance (at most
    ``most``), and the share of the other tags."""
    lead: list[dict[str, Any]] = []
    for row in rows:
        if len(lead) == most or sum(r["share"] for r in lead) >= cover:
            break
        lead.append(row)
    return lead, 1 - sum(r["share"] for r in lead)


def spread_line(summary: dict[str, Any]) -> str:
    """One line: which tags the token macro-F1 spread over the seeds comes from (empty if none)."""
    rows = summary["token_spread_by_tag"]
    if not rows:
        return ""
    lead, other = leading_tags(rows)
    parts = [
        f"{r['tag']} {r['share']:.0%} ({r['support']} chars; F1 {' / '.join(f'{f:.2f}' for f in r['f1'])})"
        for r in lead
    ]
    rest = f", the other {len(rows) - len(lead)} tags {other:.0%}" if len(lead) < len(rows) else ""
    return "token macro-F1 spread by tag: " + ", ".join(parts) + rest


def spread_table(summary: dict[str, Any], seeds: int) -> list[str]:
    """report.md's lines on which tags the token macro-F1 spread comes from (none if the seeds agree)."""
    rows = summary["token_spread_by_tag"]
    if not rows:
        return []
    lead, other = leading_tags(rows)
    return [
        f"Where the token macro-F1 spread (std {summary['token_macro_f1']['std']:.4f} over the {seeds} seeds) comes "
        "from: each tag's share of its variance (README, Why token macro-F1 hangs on a few characters).",
        "",
        "| tag | characters | F1 per seed | share |",
        "|---|---:|---|---:|",
        *[
            f"| {r['tag']} | {r['support']} | {' / '.join(f'{f:.3f}' for f in r['f1'])} | {r['share']:.0%} |"
            for r in lead
        ],
        *([f"| the other {len(rows) - len(lead)} tags | | | {other:.0%} |"] if len(lead) < len(rows) else []),
        "",
    ]


def scored_models(split: str, refit: bool, ensemble: int = 1) -> str:
    """Which models the scores are of, where the kept ones are refit on train + dev."""
    if not refit:
        return ""
    kept = f"ensembles of {ensemble} models refit on train + dev" if ensemble > 1 else "models refit on train + dev"
    if split == "test":
        return f", of the {kept}"
    return f", of the retrainings on train (the kept models, {kept}, have no dev score)"


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
) -> tuple[float, dict[float, float] | None]:
    """The kept models' entity bias: the number given, or with "auto" the bias under which the
    chosen trial's retrainings (trained on train alone) score best on dev, with the dev score under
    each bias: of the ensemble of the retrainings (``together``: where the kept models are
    ensembles), else their mean."""
    if setting != "auto":
        return float(setting), None
    models = [load_model(r["folder"], chosen.runtime) for r in chosen.runs]
    key = OBJECTIVE_KEYS[chosen.config.objective]
    scores = dev_scores(models, corpus.dev, key, together)
    return best_bias(scores), scores


def scored_on_test(folder: str, runtime: Runtime, corpus: Corpus, entity_bias: float | None = None) -> dict[str, Any]:
    """The saved model's scores on the test split (decoding with ``entity_bias`` where given)."""
    assert corpus.test is not None
    saved = load_model(folder, runtime)
    if entity_bias is not None:
        with_entity_bias(saved.model, entity_bias)
    return evaluate(saved.model, EncodedSplit(corpus.test, saved.vocab, saved.tagset), corpus.test, saved.tagset)


def entity_bias_line(bias: float, scores: dict[float, float] | None, metric: str, seeds: int, together: bool) -> str:
    """What the kept models' entity bias is and, when chosen on dev, what chose it."""
    if scores is None:
        return f"entity bias {bias:g} (given)" if bias else "entity bias 0 (the models decode as trained)"
    tried = ", ".join(f"{b:g}: {s:.4f}" for b, s in scores.items())
    by = f"the ensemble of the {seeds} retrainings'" if together else f"the {seeds} retrainings' mean"
    return f"entity bias {bias:g}, chosen on dev by {by} {metric} ({tried})"


def markdown(
    study_name: str,
    chosen: Candidate,
    candidates: list[Candidate],
    split: str,
    scores: dict[str, Any],
    refit: bool,
    ensemble: int,
    singles: dict[str, Any] | None,
    bias_line: str,
) -> str:
    def ms(x: dict[str, float]) -> str:
        return f"{x['mean']:.4f} ± {x['std']:.4f}"

    seeds = [r["seed"] for r in chosen.runs]
    lines = [
        f"# Study `{study_name}`: the chosen configuration, retrained",
        "",
        f"Trial {chosen.trial.number}, chosen from the top {len(candidates)} trial(s) by mean dev score over seeds "
        f"{', '.join(map(str, seeds))}; scores on **{split}** as mean ± sample std over {len(seeds)} runs"
        f"{scored_models(split, refit, ensemble)}.",
        "",
        "| trial | search dev | mean dev over seeds |",
        "|---|---|---|",
        *[f"| {c.trial.number} | {c.trial.value:.4f} | {c.mean_dev:.4f} |" for c in candidates],
        "",
        "```json",
        json.dumps(chosen.config.to_dict(), indent=2, sort_keys=True),
        "```",
        "",
        f"The kept models decode with {bias_line}.",
        "",
        "| score | value |",
        "|---|---|",
        *[f"| {key.replace('_', ' ')} | {ms(scores[key])} |" for key in HEADLINE],
        "",
        *(
            [
                f"The {len(seeds) * ensemble} single models of the ensembles, each on its own: "
                + ", ".join(f"{key.replace('_', ' ')} {ms(singles[key])}" for key in ("token_macro_f1", "entity_f1"))
                + ".",
                "",
            ]
            if singles
            else []
        ),
        *spread_table(scores, len(seeds)),
        "| entity type | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
        *[
            f"| {t} | {ms(r['precision'])} | {ms(r['recall'])} | {ms(r['f1'])} | {r['support']} |"
            for t, r in scores["per_type"].items()
        ],
        "",
    ]
    return "\n".join(lines)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study.best",
        description="Retrain the study's top trials under several seeds (early stopping on dev), choose the "
        "configuration with the best mean dev score, report it, and with --test score each of its models on "
        "the test split exactly once.",
        epilog="Example: python -m study.best --test   (then: python -m ner_core.predict results/bilstm-crf/model)",
    )
    parser.add_argument("--study-name", default=DEFAULT_STUDY, help=f"study to read (default {DEFAULT_STUDY})")
    parser.add_argument("--storage", help=f"storage URL (default: ${ENV_STORAGE}, else {DEFAULT_URL})")
    parser.add_argument("--data-dir", help="corpus folder (default: the one the study was run on)")
    parser.add_argument(
        "--top",
        type=int,
        default=1,
        help="retrain the TOP best trials and choose the one with the best mean dev (default 1; 3 chose no "
        "better-testing pick in three studies, at 3x the retraining: README, One trial or three?)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="retrainings with seeds seed, seed+1, ... (default 3)")
    parser.add_argument(
        "--ensemble",
        type=int,
        metavar="N",
        help="refits per kept model: each seed's kept model is an ensemble of N refits under seeds seed, "
        "seed + SEEDS, seed + 2 SEEDS, ..., tagging by their mean scores; with --test each single model is "
        f"scored too (default {DEFAULT_ENSEMBLE}, or 1 with --no-refit; 1: one refit per seed; README, One "
        "model or an ensemble?, Three or five? and Five or ten?)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        metavar="MINUTES",
        help="make the ensembles as large as fit: the largest size up to --ensemble whose trainings are "
        "estimated to end within MINUTES, from the study's timing of the chosen trial's shape (make best gives "
        "38, so that make study and make best end within 2 hours on 2 cores; default: no limit)",
    )
    parser.add_argument(
        "--cost-aware",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --time-budget, choose the trials by search dev score plus the dev gain measured for the "
        "ensemble size that fits the budget, so that a slightly lower-scoring trial that trains fast enough "
        "for large ensembles can win over one that fits only small ones (default on; --no-cost-aware: by "
        "search dev score alone; README, Which trial, within a time budget)",
    )
    parser.add_argument(
        "--entity-bias",
        default=DEFAULT_ENTITY_BIAS,
        metavar="auto|B",
        help="the kept models' bias toward entity tags when decoding (config entity_bias): auto tries "
        f"{', '.join(f'{b:g}' for b in GRID)} on dev with the retrainings (trained on train alone; their "
        "ensemble where the kept models are ensembles) and keeps the one that scores best; a number sets it; "
        f"0: the models as trained (default {DEFAULT_ENTITY_BIAS}; README, A bias toward entities)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (default 1; each with --threads)")
    parser.add_argument("--test", action="store_true", help="score each model of the chosen trial on test once")
    parser.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="once chosen, train the configuration again under each seed on train + dev (12%% more "
        "sentences on CHisIEC; the whole schedule, last weights) and test and keep those models "
        "(default on; --no-refit tests and keeps the models trained on train alone)",
    )
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
        for name in ("top", "seeds", "ensemble", "jobs"):
            if getattr(args, name) is not None and getattr(args, name) < 1:
                raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
        if args.time_budget is not None and not args.time_budget > 0:  # nan too
            raise UserError(f"--time-budget must be positive, got {args.time_budget:g}")
        if args.entity_bias != "auto":
            try:
                TrainConfig(entity_bias=float(args.entity_bias))
            except ValueError:
                raise UserError(f"--entity-bias must be auto or a number, got {args.entity_bias!r}") from None
        if args.ensemble is None:
            args.ensemble = DEFAULT_ENSEMBLE if args.refit else 1
        elif args.ensemble > 1 and not args.refit:
            raise UserError("--ensemble combines refits on train + dev; it cannot be used with --no-refit")
        study = load_study(open_storage(where.url), args.study_name, where.url)
        base = study_settings(study).base
        complete = ranked_trials(study)  # a study without one says so before the corpus is read
        corpus = load_corpus(args.data_dir or study.user_attrs.get("data_dir"), with_test=args.test)
        times_of = trial_timer(study, corpus)
        candidates = []
        for trial in chosen_trials(args, complete, base, times_of):
            runtime, note = trial_runtime(args, study, trial)
            if note:
                print(note, file=sys.stderr)
            candidates.append(Candidate(trial, config_for(trial.params, base), runtime))
            print(f"trial {trial.number} (dev {trial.value:.4f}): {json.dumps(trial.params)}")
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
        train_all(work, corpus, out, args.jobs, args.quiet)
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
            train_all(tasks, corpus, out, args.jobs, args.quiet)
        key = OBJECTIVE_KEYS[chosen.config.objective]
        together = args.ensemble > 1 and len(chosen.runs) > 1
        bias, bias_scores = chosen_entity_bias(args.entity_bias, chosen, corpus, together)
        bias_line = entity_bias_line(bias, bias_scores, key.replace("_", " "), len(chosen.runs), together)
        print(bias_line)
        for index, run in enumerate(chosen.runs):
            run["kept_folder"] = keep(run, chosen.trial.number, index, out, args.refit, bias)
        split = "test" if args.test else "dev"
        singles = None
        if args.test:  # the only models that ever see the test split, each once
            for run in chosen.runs:
                run["test"] = scored_on_test(run["kept_folder"], chosen.runtime, corpus)
                if args.ensemble > 1:
                    run["member_tests"] = [
                        scored_on_test(f, chosen.runtime, corpus, bias) for f in run["refit_folders"]
                    ]
                print(
                    f"seed {run['seed']}: test token macro-F1 {run['test']['token_macro_f1']:.4f}, "
                    f"entity F1 {run['test']['entity_f1']:.4f}" + (" (ensemble)" if args.ensemble > 1 else "")
                )
            if args.ensemble > 1:
                singles = aggregate([m for r in chosen.runs for m in r["member_tests"]])
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
                args.study_name, chosen, candidates, split, summary, args.refit, args.ensemble, singles, bias_line
            ),
            encoding="utf-8",
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"\n{split} scores of trial {chosen.trial.number} over {len(chosen.runs)} seeds"
        f"{scored_models(split, args.refit, args.ensemble)} (mean ± std):"
    )
    for key in HEADLINE:
        print(f"  {key:<18} {summary[key]['mean']:.4f} ± {summary[key]['std']:.4f}")
    if singles:
        print(f"  the {len(chosen.runs) * args.ensemble} single models, each on its own:")
        for key in ("token_macro_f1", "entity_f1"):
            print(f"  {key:<18} {singles[key]['mean']:.4f} ± {singles[key]['std']:.4f}")
    if line := spread_line(summary):
        print(f"  {line}")
    print(
        format_per_type(
            {
                t: {**{m: r[m]["mean"] for m in ("precision", "recall", "f1")}, "support": r["support"]}
                for t, r in summary["per_type"].items()
            }
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
