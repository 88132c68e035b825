"""``python -m study.run``: search the tagger's settings with Optuna against the dev score, stored
in a database, resumable.

The command line and its checks live here; the rest is in the rooms it calls: ``space`` (what is
searched), ``stored`` (the settings a study keeps), ``search`` (sampler and pruner), ``gate``
(exactly --trials trials), ``objective`` (one trial), ``loop`` (one worker), ``workers`` (K of
them), ``summary`` (what is printed) and ``report`` (the figures). Many processes (``--workers``)
or many machines (the same command with ``--storage postgresql://...``) share one study.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
import warnings

import optuna

from ner_core.config import TrainConfig, add_config_arguments, config_from_args
from ner_core.data import Corpus
from ner_core.errors import UserError, caused_by_interrupt
from ner_core.runtime import Runtime, add_runtime_arguments, decide_runtime, fallback
from storage import DEFAULT_URL, ENV_STORAGE, StorageURL, choose_storage, open_storage

from .budget import check_timeout
from .checkpoints import TrialCheckpoints, retried
from .fingerprint import VectorsPrint, study_vectors
from .gate import TrialGate
from .loop import run_trials
from .objective import Objective
from .report import write_report
from .search import PRUNERS, SAMPLERS, make_pruner, make_sampler
from .space import PARAMS, add_space_arguments, params_of, space_from_args
from .stored import (
    CREATED_MARK,
    DEFAULT_STUDY,
    DEFAULTS,
    FINISHED,
    HYPERBAND_WARMUP_EPOCHS,
    STUDY_BASE,
    UID,
    StudySettings,
    adopt_prints,
    recorded_settings,
    results_dir,
    study_corpus,
    trials_of,
)
from .summary import summary
from .warm import WARM_TOP, warm_start
from .workers import auto_workers, gpu_slots, run_workers

METRIC_NAMES = {"token-macro-f1": "dev token macro-F1", "entity-f1": "dev entity micro-F1"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m study.run",
        description="Search the BiLSTM-CRF tagger's settings (by default learning rate, hidden size, LSTM layers, "
        "dropout and batch size) with Optuna against the dev score: TPE sampling and median pruning unless "
        "told otherwise. Creates the study, or resumes it with the settings it was created with when one of the "
        "same name exists. The test split is never read.",
        epilog="Examples:\n  python -m study.run --trials 50 --workers 2\n  python -m study.run --trials 8 "
        "--max-epochs 4 --hidden-sizes 32 64 --layers-range 1 1   (a quick look)\n"
        "  python -m study.run --search lr hidden_size num_layers dropout batch_size embed_dim   (also embeddings)\n"
        "  python -m study.run --study-name cclue --data-dir data/cclue --warm-start bilstm-crf   (a new study that "
        "begins with the 5 best configurations of the study bilstm-crf)\n"
        "  python -m study.dashboard   (watch it live at http://127.0.0.1:8080)",
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
    run.add_argument(
        "--timeout",
        type=float,
        help="end the search after this many seconds: no trial starts after it, and a trial still running "
        "stops at its next epoch end (kept as pruned, stop_reason 'stopped at --timeout'); the same command "
        "resumes the study. A budget in which not even the startup trials can finish on this corpus is refused "
        "at once (a few seconds' timed training tells)",
    )
    run.add_argument("--study-name", default=DEFAULT_STUDY, help=f"study to create or resume (default {DEFAULT_STUDY})")
    run.add_argument(
        "--storage",
        help=f"storage URL (default: ${ENV_STORAGE}, else {DEFAULT_URL}; postgresql://... for many machines; "
        "a password is better given in PGPASSWORD, ~/.pgpass or $" + ENV_STORAGE + ")",
    )
    run.add_argument(
        "--data-dir", help="corpus folder (default: $NER_DATA_DIR, else the study's own, else data/chisiec)"
    )
    run.add_argument(
        "--metric",
        choices=list(METRIC_NAMES),
        help="dev score to maximize: the notebook's token macro-F1 (default) or strict entity micro-F1",
    )
    run.add_argument("--seed", type=int, default=42, help="seeds the sampler and every training run (default 42)")
    run.add_argument(
        "--workers",
        default="1",
        help="worker processes on this machine sharing the study (default 1); auto: 4 per GPU where trials "
        "train on GPUs (placed round robin, several per GPU), else one per CPU core, at most 8",
    )
    run.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="enqueue the notebook's configuration as trial 0 (off by default; the search space must contain it)",
    )
    run.add_argument(
        "--sampler", choices=list(SAMPLERS), help="tpe (default) or random search; study.bench compares them"
    )
    run.add_argument(
        "--pruner",
        choices=list(PRUNERS),
        help="median (default), hyperband or none; stored with the study (docs/decisions.md, The pruner)",
    )
    run.add_argument(
        "--startup-trials",
        type=int,
        help=f"TPE's random start-up draws, before it models the trials (default {DEFAULTS.startup_trials})",
    )
    run.add_argument(
        "--pruner-startup-trials",
        type=int,
        help=f"median pruner: finished trials it waits for before it prunes (default {DEFAULTS.pruner_startup_trials})",
    )
    run.add_argument(
        "--warmup-epochs",
        type=int,
        help=f"median pruner: the first epoch at which a trial is compared with the median (default "
        f"{DEFAULTS.warmup_epochs}); hyperband: the fewest epochs a trial runs (default {HYPERBAND_WARMUP_EPOCHS})",
    )
    run.add_argument(
        "--seeds-per-trial",
        type=int,
        help="train each configuration under this many seeds (seed, seed+1, ...) and score it by their mean dev "
        f"score: a choice less owed to one run's luck, at that many times the cost (default "
        f"{DEFAULTS.seeds_per_trial}); stored with the study",
    )
    run.add_argument("--embeddings", help="pretrained character vectors (word2vec text) for every trial")
    run.add_argument("--no-report", action="store_true", help="skip the plotly report at the end")
    run.add_argument("--quiet", action="store_true", help="no progress bar or per-trial lines")
    run.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    warm = parser.add_argument_group(
        "warm start (when this command creates the study; a study being resumed ignores them, with a note)"
    )
    warm.add_argument(
        "--warm-start",
        metavar="STUDY",
        help="begin with what an earlier study found: its best complete configurations are trained first, as this "
        "study's first trials, before the search draws its own. Each keeps its values of the settings this study "
        "searches (the settings this study holds fixed keep this study's values); one with a value outside this "
        "study's search space is named and skipped",
    )
    warm.add_argument(
        "--warm-start-storage",
        metavar="URL",
        help="where STUDY is stored (default: this study's storage; a password is better given in PGPASSWORD or "
        "~/.pgpass)",
    )
    warm.add_argument(
        "--warm-start-top",
        metavar="K",
        type=int,
        help=f"how many of STUDY's best configurations to begin with (default {WARM_TOP})",
    )
    add_runtime_arguments(parser, threads_help="torch threads per worker (default: CPU cores / workers)")
    add_space_arguments(parser)
    add_config_arguments(
        parser,
        exclude=("objective", "seed", "entity_bias"),  # entity_bias: study.best chooses it
        defaults=STUDY_BASE,
        title="fixed for every trial (a searched setting's value comes from the search instead)",
    )
    return parser


def parse_workers(value: str, device: str) -> int:
    """--workers N or auto (4 per GPU on GPUs, one per CPU core otherwise, at most 8)."""
    if value == "auto":
        return auto_workers(device)
    try:
        return int(value)
    except ValueError:
        raise UserError(f"--workers must be a whole number or auto, got {value!r}") from None


def check_args(args: argparse.Namespace) -> None:
    """One-line errors for options out of range or that do not apply."""
    for name, least in (
        ("trials", 1),
        ("workers", 1),
        ("startup_trials", 0),
        ("pruner_startup_trials", 0),
        ("warmup_epochs", 0),
        ("seeds_per_trial", 1),
        ("warm_start_top", 1),
    ):
        value = getattr(args, name)
        if value is not None and value < least:
            raise UserError(f"--{name.replace('_', '-')} must be at least {least}, got {value}")
    if args.timeout is not None and args.timeout <= 0:
        raise UserError(f"--timeout must be positive, got {args.timeout}")
    pruner = args.pruner or DEFAULTS.pruner
    if args.startup_trials is not None and (args.sampler or DEFAULTS.sampler) != "tpe":
        raise UserError("--startup-trials applies to --sampler tpe only")
    if args.pruner_startup_trials is not None and pruner != "median":
        raise UserError("--pruner-startup-trials applies to --pruner median only")
    if args.warmup_epochs is not None and pruner == "none":
        raise UserError("--warmup-epochs applies to --pruner median and hyperband only")
    if not args.warm_start and (args.warm_start_storage or args.warm_start_top is not None):
        raise UserError("--warm-start-storage and --warm-start-top apply with --warm-start STUDY only")


def warmup_epochs(args: argparse.Namespace) -> int:
    """--warmup-epochs, else its default for the pruner: Hyperband's brackets start where they were
    benchmarked, median pruning judges from the epoch the replayed searches chose."""
    if args.warmup_epochs is not None:
        return args.warmup_epochs
    return HYPERBAND_WARMUP_EPOCHS if args.pruner == "hyperband" else DEFAULTS.warmup_epochs


def settings_from_args(args: argparse.Namespace, data_dir: str, cuda: bool) -> StudySettings:
    """The settings a new study gets from the command line (the defaults where not given; the
    GPU's default space where its trials train on a GPU)."""
    space = space_from_args(args, cuda)
    fixed = [n for n in space.names if getattr(args, n, None) is not None]
    if fixed:
        name = fixed[0]
        raise UserError(
            f"--{name.replace('_', '-')}: {name} is searched (range {PARAMS[name].flag}); "
            "leave it out of --search to fix it"
        )
    metric = args.metric or DEFAULTS.metric
    settings = StudySettings(
        base=config_from_args(args, STUDY_BASE).replace(objective=metric, seed=args.seed),
        space=space,
        data_dir=data_dir,
        metric=metric,
        sampler=args.sampler or DEFAULTS.sampler,
        pruner=args.pruner or DEFAULTS.pruner,
        startup_trials=DEFAULTS.startup_trials if args.startup_trials is None else args.startup_trials,
        pruner_startup_trials=(
            DEFAULTS.pruner_startup_trials if args.pruner_startup_trials is None else args.pruner_startup_trials
        ),
        warmup_epochs=warmup_epochs(args),
        seeds_per_trial=args.seeds_per_trial or DEFAULTS.seeds_per_trial,
    )
    if args.baseline and (outside := space.outside(TrainConfig())):
        notebook = TrainConfig()
        raise UserError(
            "--baseline: the notebook's configuration is outside the search space ("
            + ", ".join(f"{n} {getattr(notebook, n)}" for n in outside)
            + "); widen "
            + ", ".join(PARAMS[n].flag for n in outside)
        )
    return settings


def ignored(args: argparse.Namespace, asked: StudySettings, kept: StudySettings) -> list[str]:
    """The options given on this command line that differ from the settings the study keeps."""
    out = []
    for p in PARAMS.values():
        if (args.search or getattr(args, f"space_{p.name}") is not None) and (
            asked.space.ranges.get(p.name) != kept.space.ranges.get(p.name)
        ):
            values = asked.space.ranges.get(p.name)
            out.append(f"{p.flag} {' '.join(f'{v:g}' for v in values)}" if values else f"--search without {p.name}")
    settings = ("metric", "sampler", "pruner", "startup_trials", "pruner_startup_trials", "warmup_epochs")
    for name in (*settings, "seeds_per_trial"):
        if getattr(args, name) is not None and getattr(asked, name) != getattr(kept, name):
            out.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    for name, value in asked.base.to_dict().items():
        # --seed is each worker's own (its draws), not a setting; --metric was compared above
        if name in ("seed", "objective"):
            continue
        if getattr(args, name, None) is not None and value != getattr(kept.base, name):
            out.append(f"--{name.replace('_', '-')} {value}")
    if args.warm_start:  # only a study being created is warm-started
        out.append(f"--warm-start {args.warm_start}")
    return out


def open_study(
    args: argparse.Namespace, storage: optuna.storages.BaseStorage, runtime: Runtime, url: str
) -> tuple[optuna.Study, StudySettings, Corpus, str | None]:
    """Resume the study with the settings it keeps, or create it with the command line's: the
    study, its settings, its corpus and the path of its vectors (None without).

    The corpus (and the vectors, if any) are read and checked against the study's fingerprint
    before anything is created or trained: a bad corpus leaves no half-made study, and another
    corpus under the same study name stops with one line. The same files in another folder (a
    copy, another machine) are the study's own. So is a --warm-start study (``url``: where the new
    study is, the default place to look for it).
    """
    kept = recorded_settings(storage, args.study_name)
    corpus, found = study_corpus(args.study_name, args.data_dir, kept)
    asked = settings_from_args(args, str(corpus.directory), runtime.cuda)
    legacy = kept is not None and kept.corpus is None  # made before studies stored their corpus
    if kept is None or legacy:
        vectors = VectorsPrint.of(args.embeddings) if args.embeddings else None
        embeddings = args.embeddings
    else:
        vectors = kept.embeddings
        embeddings = study_vectors(args.study_name, kept.embeddings, args.embeddings)
    if kept is None:
        settings = asked.replace(corpus=found, embeddings=vectors)
    else:
        settings = kept.replace(data_dir=asked.data_dir, corpus=found, embeddings=vectors)
    if kept is not None and not args.child and (differ := ignored(args, asked, kept)):
        print(
            f"note: study '{args.study_name}' keeps the settings it was created with; ignored: {', '.join(differ)}",
            file=sys.stderr,
        )
    warm = None
    if kept is None and args.warm_start:
        top = WARM_TOP if args.warm_start_top is None else args.warm_start_top
        warm = warm_start(args.warm_start, args.warm_start_storage or url, top, settings.space)
    if args.timeout is not None and not args.child:  # the parent checks for its workers
        finished = len(trials_of(storage, args.study_name, FINISHED))
        check_timeout(args.timeout, settings, corpus, runtime, args.workers, finished)
    gate = TrialGate(storage, args.study_name, args.trials)
    study = optuna.create_study(
        study_name=args.study_name,
        storage=storage,
        # Offset by the trials already there: a resumed run must not replay the first run's draws.
        sampler=make_sampler(settings, gate, args.seed + len(trials_of(storage, args.study_name))),
        pruner=make_pruner(settings),
        direction="maximize",
        load_if_exists=True,
    )
    if legacy:
        note = adopt_prints(study, found, vectors)
        if not args.child:
            print(note, file=sys.stderr)
    if kept is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC_NAMES[settings.metric]])  # the dashboard's name for the value
        if args.baseline:
            study.enqueue_trial(
                params_of(TrainConfig(), settings.space), user_attrs={"baseline": "notebook"}, skip_if_exists=True
            )
        if warm is not None:
            warm.enqueue(study)
            if note := warm.note():
                print(note, file=sys.stderr)
        # One write per attribute, base_config last: readers take a study as created once it has
        # base_config (StudySettings.from_attrs), so a worker killed halfway through leaves a study
        # the next worker completes, not one that every later worker fails to read.
        attrs = {**settings.to_attrs(), UID: uuid.uuid4().hex}
        for key in sorted(attrs, key=lambda k: k == CREATED_MARK):
            study.set_user_attr(key, attrs[key])
    return study, settings, corpus, embeddings


def precision_note(study: optuna.Study, runtime: Runtime, args: argparse.Namespace) -> str | None:
    """A note when earlier trials ran in bfloat16 and this machine cannot (this run's trials use float32)."""
    if args.precision != "auto" or args.child:
        return None
    ran = {t.user_attrs.get("precision") for t in study.get_trials(deepcopy=False)}
    return fallback("bfloat16", runtime, "earlier trials ran")[1] if "bfloat16" in ran else None


def without_storage(argv: list[str]) -> list[str]:
    """``argv`` less --storage and its value (also as --storage=URL, or abbreviated as argparse allows):
    a worker gets the URL through its environment, where other users cannot read it (ps shows argv)."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        if len(name) >= len("--sto") and "--storage".startswith(name):
            skip = "=" not in token
            continue
        out.append(token)
    return out


def interrupted(where: StorageURL) -> int:
    """Ctrl-C: say in one line where the finished trials are and how to go on; exit status 130."""
    print(f"\ninterrupted: finished trials are kept in {where}; run the same command to resume", file=sys.stderr)
    return 130


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial replaces Optuna's log
    started = time.perf_counter()
    where = choose_storage(args.storage)
    if note := where.password_note():
        print(note, file=sys.stderr)
    try:
        args.workers = parse_workers(args.workers, args.device)
        check_args(args)
        threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
        runtime = decide_runtime(args.device, threads, args.precision)
        storage = open_storage(where.url)
        study, settings, corpus, embeddings = open_study(args, storage, runtime, where.url)
        if note := precision_note(study, runtime, args):
            print(note, file=sys.stderr)
        if args.workers > 1:
            run_workers(
                study,
                without_storage(argv),
                threads,
                args.seed,
                args.trials,
                results_dir(args.study_name),
                bar=not args.quiet,
                env={ENV_STORAGE: where.url},
                slots=gpu_slots(runtime, args.workers),
            )
        else:
            # one deadline for starting trials and for stopping those still running at it
            deadline = None if args.timeout is None else time.monotonic() + args.timeout
            objective = Objective(
                corpus,
                settings.base,
                settings.space,
                runtime,
                embeddings,
                settings.seeds_per_trial,
                deadline,
                # a checkpoint per trial where a dead worker's trial is retried (heartbeats), to go on from
                checkpoints=TrialCheckpoints(args.study_name, study.user_attrs.get(UID)) if retried(storage) else None,
            )
            gate = study.sampler.gate
            run_trials(study, objective, gate, deadline, bar=not (args.quiet or args.child), lines=not args.quiet)
        if args.child:
            return 0
        if not args.no_report:
            written = write_report(study, results_dir(args.study_name))
            print(f"report: {results_dir(args.study_name)}/ ({', '.join(p.name for p in written)})")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted(where)
    except Exception as err:
        if not caused_by_interrupt(err):
            raise
        return interrupted(where)  # Ctrl-C cut a checkpoint or a query short, which raised its own error
    print(summary(study, where, time.perf_counter() - started, args.trials))
    return 0


if __name__ == "__main__":
    sys.exit(main())
