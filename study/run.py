"""``python -m study.run``: a TPE search with median pruning, stored in a database, resumable.

Many processes (``--workers``) or many machines (the same command with ``--storage
postgresql://...``) share one study through Optuna's storage.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from ner_core.config import TrainConfig, add_config_arguments, config_from_args
from ner_core.data import load_corpus, resolve_data_dir
from ner_core.errors import UserError
from storage import DEFAULT_URL, describe, open_storage

from .objective import CAUGHT, Objective
from .space import SEARCHED, STUDY_BASE, SearchSpace, add_space_arguments, searched_params, space_from_args

DEFAULT_STUDY = "bilstm-crf"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Median pruning: only after 5 trials have finished (a median of fewer is noise), and a trial is
# first judged after its 3rd epoch (first epochs are noisy; see README "The search").
STARTUP_TRIALS = 5
WARMUP_EPOCHS = 3
# How often a worker with no trial to start looks again (for a dead worker's trial to take over).
WAIT_S = 2.0


class NoRoom(Exception):
    """A trial that would take the study past --trials; it is back in the queue (WAITING)."""


class TrialGate:
    """Ends the study at exactly --trials finished trials, however many workers share it.

    A worker starts a trial only while finished + running trials < target. When the study is
    full it waits, failing stale trials as it goes: a dead worker's trial is then failed, queued
    again by the storage's RetryHeartbeatStaleTrialCallback, and run here (Optuna only does that
    when some worker starts another trial, and MaxTrialsCallback overshoots by up to a trial per
    worker). Two workers that start their trials at the same instant both see the other's new
    RUNNING trial in ``admit`` (called by the sampler before anything runs or beats); one that
    counts too many puts its trial back to WAITING and waits. Without heartbeats (journal
    storage) a running trial may belong to a dead worker forever, so running trials are not
    counted there and K workers may finish up to K-1 trials more.
    """

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str, target: int):
        self.storage = storage
        self.study_name = study_name
        self.target = target
        self.heartbeats = isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None

    def counts(self) -> tuple[int, int]:
        """(finished, running) trials of the study."""
        trials = _trials(self.storage, self.study_name, states=(*FINISHED, TrialState.RUNNING))
        done = sum(t.state in FINISHED for t in trials)
        return done, len(trials) - done

    def wait_for_room(self, study: optuna.Study, deadline: float | None) -> bool:
        """True when this worker may start a trial; False when the study is done or time is up."""
        while True:
            if self.heartbeats:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    fail_stale_trials(study)  # FAIL + a retry in the queue for each dead worker's trial
            done, running = self.counts()
            if done >= self.target or (deadline is not None and time.monotonic() >= deadline):
                return False
            if not self.heartbeats or done + running < self.target:
                return True
            time.sleep(WAIT_S)

    def admit(self, trial: FrozenTrial) -> None:
        """Raise NoRoom (the trial back to WAITING) if the study counts too many with ``trial``."""
        if not self.heartbeats or sum(self.counts()) <= self.target:
            return
        study_id = self.storage.get_study_id_from_name(self.study_name)
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        self.storage.set_trial_state_values(trial_id, TrialState.WAITING)
        raise NoRoom(f"trial {trial.number}")


class GatedTPESampler(optuna.samplers.TPESampler):
    """TPE whose trials start only when the gate admits them (``before_trial`` runs in study.ask)."""

    def __init__(self, gate: TrialGate, **kwargs):
        super().__init__(**kwargs)
        self.gate = gate

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.gate.admit(trial)
        super().before_trial(study, trial)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m study.run",
        description="Search learning rate, hidden size, dropout, LSTM layers and batch size of the BiLSTM-CRF "
        "tagger with Optuna (TPE sampling, median pruning) against the dev score. Creates the study, or "
        "resumes it when one of the same name exists. The test split is never read.",
        epilog="Examples:\n  python -m study.run --trials 50\n  python -m study.run --trials 8 --max-epochs 4 "
        "--hidden-sizes 32 64 --layers-range 1 1   (a quick look)\n"
        "  optuna-dashboard sqlite:///results/study.db   (watch it live)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("the study")
    run.add_argument(
        "--trials",
        type=int,
        default=50,
        help="finish when the study holds this many finished (complete + pruned) trials, "
        "counting earlier runs and other workers (default 50)",
    )
    run.add_argument("--timeout", type=float, help="stop starting new trials after this many seconds")
    run.add_argument("--study-name", default=DEFAULT_STUDY, help=f"study to create or resume (default {DEFAULT_STUDY})")
    run.add_argument("--storage", help=f"storage URL (default {DEFAULT_URL}; postgresql://... for many machines)")
    run.add_argument("--data-dir", help="corpus folder (default: $NER_DATA_DIR, else data/chisiec)")
    run.add_argument(
        "--metric",
        choices=("token-macro-f1", "entity-f1"),
        default="token-macro-f1",
        help="dev score to maximize: the notebook's token macro-F1 (default) or strict entity micro-F1",
    )
    run.add_argument("--seed", type=int, default=42, help="seeds the sampler and every training run (default 42)")
    run.add_argument(
        "--workers", type=int, default=1, help="worker processes on this machine sharing the study (default 1)"
    )
    run.add_argument("--threads", type=int, help="torch threads per worker (default: CPU cores / workers)")
    run.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="enqueue the notebook's configuration as trial 0 (off by default: on 2 cores its 20 epochs take "
        "about 28 minutes; it needs --hidden-sizes with 512 and --layers-range up to 3)",
    )
    run.add_argument(
        "--startup-trials",
        type=int,
        default=STARTUP_TRIALS,
        help=f"finished trials before median pruning starts (default {STARTUP_TRIALS})",
    )
    run.add_argument(
        "--warmup-epochs",
        type=int,
        default=WARMUP_EPOCHS,
        help=f"a trial is first compared with the median after this epoch (default {WARMUP_EPOCHS})",
    )
    run.add_argument(
        "--sampler",
        choices=("tpe", "random"),
        default="tpe",
        help="tpe (default) or random search; study.bench compares them",
    )
    run.add_argument("--pruner", choices=("median", "none"), default="median", help="median pruning (default) or none")
    run.add_argument("--embeddings", help="pretrained character vectors (word2vec text) for every trial")
    run.add_argument("--no-report", action="store_true", help="skip the plotly report at the end")
    run.add_argument("--quiet", action="store_true", help="no progress bar or per-trial lines")
    run.add_argument("--child", action="store_true", help=argparse.SUPPRESS)

    add_space_arguments(parser)
    add_config_arguments(
        parser,
        exclude=(*SEARCHED, "objective", "seed"),
        defaults=STUDY_BASE,
        title="fixed for every trial (not searched)",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> tuple[TrainConfig, SearchSpace]:
    """The fixed configuration and the search space the command line asks for."""
    for name in ("trials", "workers", "startup_trials"):
        if getattr(args, name) < (0 if name == "startup_trials" else 1):
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup_epochs < 0:
        raise UserError(f"--warmup-epochs must be >= 0, got {args.warmup_epochs}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if args.timeout is not None and args.timeout <= 0:
        raise UserError(f"--timeout must be positive, got {args.timeout}")
    base = config_from_args(args, STUDY_BASE).replace(objective=args.metric, seed=args.seed)
    space = space_from_args(args)
    if args.baseline and not space.contains(searched_params(TrainConfig())):
        raise UserError(
            "--baseline: the notebook's configuration (512 units, 3 layers, batch 128) is outside the search "
            "space; widen it, e.g. --hidden-sizes 64 128 256 512 --layers-range 1 3"
        )
    return base, space


def open_study(
    args: argparse.Namespace, base: TrainConfig, space: SearchSpace
) -> tuple[optuna.Study, TrainConfig, SearchSpace]:
    """Create the study (recording its settings) or resume it (using the recorded settings)."""
    storage = open_storage(args.storage)
    existing = len(_trials(storage, args.study_name))
    sampler = GatedTPESampler(
        TrialGate(storage, args.study_name, args.trials),
        # Offset by the trials already there: a resumed run must not replay the first run's draws.
        seed=args.seed + existing,
        multivariate=True,
        constant_liar=True,
        # TPE draws its startup trials from the random sampler: random search is TPE that never starts.
        **({"n_startup_trials": 1 << 30} if args.sampler == "random" else {}),
    )
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=args.startup_trials, n_warmup_steps=args.warmup_epochs)
        if args.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name=args.study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )
    attrs = study.user_attrs
    if "base_config" in attrs:
        recorded_base = TrainConfig.from_dict(attrs["base_config"], f"study {args.study_name}")
        recorded_space = SearchSpace.from_dict(attrs["space"])
        if (recorded_base, recorded_space) != (base, space) and not args.child:
            print(f"note: resuming study '{args.study_name}' with the settings it was created with", file=sys.stderr)
        return study, recorded_base, recorded_space
    study.set_user_attr("base_config", base.to_dict())
    study.set_user_attr("space", space.to_dict())
    study.set_user_attr("data_dir", str(resolve_data_dir(args.data_dir)))
    study.set_user_attr("metric", args.metric)
    if args.baseline:
        study.enqueue_trial(searched_params(TrainConfig()), user_attrs={"baseline": "notebook"}, skip_if_exists=True)
    return study, base, space


def _trials(
    storage: optuna.storages.BaseStorage, name: str, states: tuple[TrialState, ...] | None = None
) -> list[FrozenTrial]:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return []
    return storage.get_all_trials(study_id, deepcopy=False, states=states)


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def trial_line(study: optuna.Study, trial: FrozenTrial) -> str:
    """One line per finished trial: state, value, epochs, time, parameters."""
    params = "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    attrs = trial.user_attrs
    if trial.state == TrialState.FAIL:
        head = (
            f"trial {trial.number:>3} FAIL      {attrs.get('fail_reason') or trial.system_attrs.get('fail_reason', '')}"
        )
    else:
        value = trial.value if trial.value is not None else float("nan")
        head = (
            f"trial {trial.number:>3} {trial.state.name:<8}  dev {value:.4f}  "
            f"{attrs.get('epochs_run', 0):>2} epochs {attrs.get('seconds', 0):6.0f} s"
        )
    try:
        best = f"  (best {study.best_value:.4f}, #{study.best_trial.number})"
    except ValueError:
        best = ""
    return f"{head}  {params}{best}"


def run_here(args: argparse.Namespace, study: optuna.Study, base: TrainConfig, space: SearchSpace) -> None:
    """Run trials in this process until the study holds --trials finished ones (or --timeout)."""
    if finished(study) >= args.trials:
        return
    corpus = load_corpus(args.data_dir or study.user_attrs.get("data_dir"))
    objective = Objective(corpus, base, space, threads=args.threads or os.cpu_count(), embeddings=args.embeddings)
    bar = tqdm(
        total=args.trials,
        initial=finished(study),
        desc=f"study {args.study_name}",
        unit="trial",
        disable=args.quiet or args.child,
    )

    def progress(study: optuna.Study, trial: FrozenTrial) -> None:
        bar.n = min(finished(study), args.trials)
        bar.refresh()
        if not args.quiet:
            bar.write(trial_line(study, trial))
            sys.stdout.flush()

    gate: TrialGate = study.sampler.gate
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        while gate.wait_for_room(study, deadline):
            try:
                study.optimize(objective, n_trials=1, callbacks=[progress], catch=CAUGHT)
            except NoRoom:
                time.sleep(random.uniform(0.1, 1.0))  # another worker took the last place; look again
    finally:
        bar.close()


def run_workers(args: argparse.Namespace, argv: list[str], study: optuna.Study) -> None:
    """Start --workers processes on this study; show their common progress from the storage."""
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    logs = Path("results") / args.study_name
    logs.mkdir(parents=True, exist_ok=True)
    children = []
    for k in range(args.workers):
        log = (logs / f"worker-{k}.log").open("w")
        command = [
            sys.executable,
            "-m",
            "study.run",
            *argv,
            "--workers",
            "1",
            "--threads",
            str(threads),
            "--no-report",
            "--child",
            "--seed",
            str(args.seed + 1000 * k),
        ]
        children.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
    print(f"{args.workers} workers, {threads} torch thread(s) each; their logs: {logs}/worker-*.log")
    bar = tqdm(
        total=args.trials, initial=finished(study), desc=f"study {args.study_name}", unit="trial", disable=args.quiet
    )
    try:
        while any(p.poll() is None for p, _ in children):
            time.sleep(1.0)
            bar.n = min(finished(study), args.trials)
            bar.refresh()
    finally:
        for process, log in children:
            process.wait()
            log.close()
        bar.close()
    failed = [k for k, (p, _) in enumerate(children) if p.returncode not in (0, None)]
    if failed:
        raise UserError(f"worker(s) {', '.join(map(str, failed))} failed; see {logs}/worker-N.log")


def summary(args: argparse.Namespace, study: optuna.Study, seconds: float) -> str:
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    lines = [
        f"\nstudy '{args.study_name}' in {describe(args.storage)}: {done} finished trials "
        f"({counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
        f"{counts[TrialState.FAIL]} failed); this run took {seconds / 60:.1f} min",
    ]
    if counts[TrialState.COMPLETE]:
        best = study.best_trial
        lines.append(
            f"best: trial {best.number}, dev {study.user_attrs.get('metric', args.metric)} {best.value:.4f}, "
            f"dev entity F1 {best.user_attrs.get('dev_entity_f1', float('nan')):.4f}"
        )
        lines.append("      " + json.dumps(best.params))
    where = []
    if args.study_name != DEFAULT_STUDY:
        where += ["--study-name", args.study_name]
    if args.storage:
        where += ["--storage", args.storage]
    lines.append(f"next: python -m study.best --test {' '.join(where)}".rstrip())
    lines.append(f"      optuna-dashboard {args.storage or DEFAULT_URL}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial replaces Optuna's log
    started = time.perf_counter()
    try:
        base, space = settings_from_args(args)
        load_corpus(args.data_dir)  # a bad corpus fails here, before any study is touched
        study, base, space = open_study(args, base, space)
        if args.workers > 1:
            run_workers(args, argv, study)
        else:
            run_here(args, study, base, space)
        if args.child:
            return 0
        if not args.no_report:
            from .report import write_report

            written = write_report(study, Path("results") / args.study_name)
            print(f"report: {Path('results') / args.study_name}/ ({', '.join(p.name for p in written)})")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished trials are kept in {describe(args.storage)}; run the same command to resume",
            file=sys.stderr,
        )
        return 130
    print(summary(args, study, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
