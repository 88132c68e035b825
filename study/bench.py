"""``python -m study.bench``: how soon does each search strategy reach a target dev score?

Arms, each given the same wall-clock budget on the same corpus and machine:
  A  tpe+median   the suite's defaults (TPE sampling, median pruning)
  B  random       random search, no pruning
  C  tpe          TPE without pruning (with --arms A B C)
Each arm runs ``python -m study.run`` with ``--timeout BUDGET`` into its own SQLite file, once per
seed (``--jobs`` of them at once). Best complete dev score against elapsed seconds is read back
from the storage; the table gives the time each run took to reach each target and the ratio of
median times B / A; a plotly HTML shows the curves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState

from ner_core.data import load_corpus, resolve_data_dir
from ner_core.errors import UserError

ARMS = {
    "A": ("tpe+median", ["--sampler", "tpe", "--pruner", "median"]),
    "B": ("random", ["--sampler", "random", "--pruner", "none"]),
    "C": ("tpe", ["--sampler", "tpe", "--pruner", "none"]),
}


def write_subset(source: Path, dest: Path, train_sentences: int) -> Path:
    """The first N training sentences and the whole dev split: a quick corpus."""
    dest.mkdir(parents=True, exist_ok=True)
    blocks = source.joinpath("train.txt").read_text(encoding="utf-8-sig").replace("\r\n", "\n").split("\n\n")
    dest.joinpath("train.txt").write_text("\n\n".join(blocks[:train_sentences]).strip("\n") + "\n", encoding="utf-8")
    dest.joinpath("dev.txt").write_bytes(source.joinpath("dev.txt").read_bytes())
    return dest


def curve(db: Path) -> list[tuple[float, float]]:
    """(seconds since the first trial started, best complete dev score so far) at each improvement."""
    study = optuna.load_study(study_name="bench", storage=f"sqlite:///{db}")
    trials = study.get_trials(deepcopy=False)
    start = min(t.datetime_start for t in trials if t.datetime_start)
    points, best = [], float("-inf")
    for t in sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.datetime_complete):
        if t.value > best:
            best = t.value
            points.append(((t.datetime_complete - start).total_seconds(), best))
    return points


def within(points: list[tuple[float, float]], budget: float) -> list[tuple[float, float]]:
    """The improvements made within the budget (a trial running at the deadline is let finish)."""
    return [(s, v) for s, v in points if s <= budget]


def time_to(points: list[tuple[float, float]], target: float) -> float | None:
    return next((s for s, v in points if v >= target), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study.bench",
        description="Time to a target dev score: TPE + median pruning (the defaults) against random search "
        "without pruning, the same wall-clock budget each.",
        epilog="Example: python -m study.bench --quick --budget 300   (a first look, about 10 minutes)",
    )
    parser.add_argument("--data-dir", help="corpus folder (default: $NER_DATA_DIR, else data/chisiec)")
    parser.add_argument("--budget", type=float, default=1800, help="seconds per arm and seed (default 1800)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="seeds per arm (default 1 2)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=["A", "B"], help="arms (default A B)")
    parser.add_argument(
        "--target",
        type=float,
        nargs="+",
        help="dev token macro-F1 to reach, one or more (default: the dev score in results/notebook/metrics.json, "
        "the notebook configuration's full run; with --quick 0.5)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the first 400 training sentences, at most 8 epochs and 128 units per trial",
    )
    parser.add_argument("--threads", type=int, help="torch threads per run (default: torch's choice)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once (default 1); at most cores / --threads, or the runs slow each other down",
    )
    parser.add_argument("--out", default="results/bench", help="folder for databases, JSON and HTML")
    parser.add_argument(
        "study_args",
        nargs=argparse.REMAINDER,
        help="after --, options passed to every study.run (e.g. -- --max-epochs 10)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        data_dir = resolve_data_dir(args.data_dir)
        load_corpus(data_dir)
        targets = args.target
        if targets is None and args.quick:
            targets = [0.5]
        if targets is None:
            metrics = Path("results/notebook/metrics.json")
            if not metrics.is_file():
                raise UserError(f"{metrics}: missing; give --target, or first run: make train")
            targets = [json.loads(metrics.read_text())["dev"]["token_macro_f1"]]
        if args.budget <= 0:
            raise UserError(f"--budget must be positive, got {args.budget}")
        if args.jobs < 1:
            raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    extra = [a for a in args.study_args if a != "--"]
    if args.quick:
        data_dir = write_subset(data_dir, out / "quick-corpus", 400)
        # small models only: a trial that outlives the budget would be cut off unseen
        extra = ["--max-epochs", "8", "--hidden-sizes", "32", "64", "128", "--layers-range", "1", "2", *extra]
    print(
        f"target dev token macro-F1 {', '.join(f'{t:.4f}' for t in targets)}; budget {args.budget:.0f} s per run; "
        f"arms {', '.join(f'{a} ({ARMS[a][0]})' for a in args.arms)}; seeds {args.seeds}; corpus {data_dir}; "
        f"{args.jobs} run(s) at once"
    )
    runs = [(arm, seed) for arm in args.arms for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda run: bench_run(*run, args, data_dir, extra, targets), runs))
    results: dict[str, list[dict]] = {}
    for (arm, _), run in zip(runs, done):
        results.setdefault(arm, []).append(run)
    medians = median_times(results, targets, args.budget)
    print_table(results, medians)
    write_figure(results, targets, args.budget, out / "time_to_target.html")
    (out / "time_to_target.json").write_text(
        json.dumps({"targets": targets, "budget": args.budget, "results": results, "medians": medians}, indent=2) + "\n"
    )
    print(f"wrote {out}/time_to_target.html and time_to_target.json")
    return 0


def bench_run(
    arm: str, seed: int, args: argparse.Namespace, data_dir: Path, extra: list[str], targets: list[float]
) -> dict[str, Any]:
    """One arm under one seed: study.run for the budget into its own SQLite file; its curve."""
    name, options = ARMS[arm]
    db = Path(args.out) / f"arm-{arm}-seed-{seed}.db"
    db.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "study.run",
        "--study-name",
        "bench",
        "--storage",
        f"sqlite:///{db}",
        "--data-dir",
        str(data_dir),
        "--trials",
        "10000",
        "--timeout",
        str(args.budget),
        "--seed",
        str(seed),
        "--no-report",
        "--quiet",
        *options,
        *extra,
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    print(f"arm {arm} ({name}), seed {seed}: running {args.budget:.0f} s ...", flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    points = within(curve(db), args.budget)
    reached = {str(t): time_to(points, t) for t in targets}
    best = points[-1][1] if points else None
    print(
        f"  arm {arm}, seed {seed}: best {best if best is not None else float('nan'):.4f}; reached "
        + ", ".join(f"{t} {'never' if s is None else f'after {s:.0f} s'}" for t, s in reached.items()),
        flush=True,
    )
    return {"seed": seed, "curve": points, "time_to_target": reached, "best": best}


def median_times(results: dict[str, list[dict]], targets: list[float], budget: float) -> dict[str, dict[str, float]]:
    """Per target, per arm: the median seconds to reach it over seeds."""
    return {
        # a run that never reached the target counts as the whole budget (a lower bound on its time)
        str(t): {
            arm: statistics.median(r["time_to_target"][str(t)] or budget for r in rs) for arm, rs in results.items()
        }
        for t in targets
    }


def print_table(results: dict[str, list[dict]], medians: dict[str, dict[str, float]]) -> None:
    """Per run: best dev score and time to each target; then the median per arm and B / A."""
    heads = [f"to {float(t):.4f}" for t in medians]
    print(f"\n{'arm':<14} {'seed':>4} {'best dev':>8} " + " ".join(f"{h:>11}" for h in heads))
    for arm, runs in results.items():
        for run in runs:
            best = "-" if run["best"] is None else f"{run['best']:.4f}"
            times = ["never" if s is None else f"{s:.0f} s" for s in run["time_to_target"].values()]
            print(f"{arm + ' ' + ARMS[arm][0]:<14} {run['seed']:>4} {best:>8} " + " ".join(f"{x:>11}" for x in times))
    for t, by_arm in medians.items():
        if "A" in by_arm and "B" in by_arm:
            print(
                f"target {float(t):.4f}: median time A {by_arm['A']:.0f} s, B {by_arm['B']:.0f} s; B / A = "
                f"{by_arm['B'] / by_arm['A']:.2f} (a run that missed counts as the budget)"
            )


def write_figure(results: dict[str, list[dict]], targets: list[float], budget: float, path: Path) -> None:
    figure = go.Figure()
    for arm, runs in results.items():
        for run in runs:
            xs = [s for s, _ in run["curve"]] + [budget]
            ys = [v for _, v in run["curve"]] + ([run["curve"][-1][1]] if run["curve"] else [])
            figure.add_trace(
                go.Scatter(
                    x=xs[: len(ys)],
                    y=ys,
                    mode="lines+markers",
                    line_shape="hv",
                    name=f"{arm} {ARMS[arm][0]}, seed {run['seed']}",
                )
            )
    for t in targets:
        figure.add_hline(y=t, line_dash="dash", annotation_text=f"target {t:.4f}")
    figure.update_layout(
        title="Best dev token macro-F1 against elapsed seconds",
        xaxis_title="seconds",
        yaxis_title="best dev token macro-F1 so far",
    )
    figure.write_html(path, include_plotlyjs="directory")


if __name__ == "__main__":
    sys.exit(main())
