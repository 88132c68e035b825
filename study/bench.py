"""``python -m study.bench``: does the suite's search beat random search, and how soon?

Arms, each given the same wall-clock budget on the same corpus and machine, under several seeds:
  A  tpe+median     TPE sampling, median pruning (the suite's defaults, as the design card asks)
  B  random         random search, no pruning
  C  tpe+hyperband  TPE sampling, Hyperband pruning (--pruner hyperband)
  D  tpe            TPE without pruning (on request)
Each run is ``python -m study.run --timeout BUDGET`` into its own SQLite file (``--jobs`` runs at
once). An arm's seeds are its own (seed + 1000 x the arm's place), so no two arms share their
random start-up draws. Read back from the storage: the best complete dev score against elapsed
seconds. Per arm: the best score at the budget (median and range over seeds) and the median time
to each target; a run that never reaches a target counts as the whole budget. The default target
is the one that separates the arms: the median best score random search (B) reaches at the budget.
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
    "C": ("tpe+hyperband", ["--sampler", "tpe", "--pruner", "hyperband"]),
    "D": ("tpe", ["--sampler", "tpe", "--pruner", "none"]),
}
COLORS = {"A": "#1f77b4", "B": "#d62728", "C": "#2ca02c", "D": "#9467bd"}


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
    """The improvements made within the budget (a trial running at the deadline stops as pruned)."""
    return [(s, v) for s, v in points if s <= budget]


def time_to(points: list[tuple[float, float]], target: float) -> float | None:
    return next((s for s, v in points if v >= target), None)


def arm_seed(arm: str, seed: int) -> int:
    """Each arm draws its own random start-up trials: no two arms share a seed."""
    return seed + 1000 * list(ARMS).index(arm)


def bench_run(arm: str, seed: int, args: argparse.Namespace, data_dir: Path, extra: list[str]) -> dict[str, Any]:
    """One arm under one seed: study.run for the budget into its own SQLite file; its curve."""
    name, options = ARMS[arm]
    db = Path(args.out) / f"arm-{arm}-seed-{seed}.db"
    db.unlink(missing_ok=True)
    command = [sys.executable, "-m", "study.run", "--study-name", "bench", "--storage", f"sqlite:///{db}"]
    command += ["--data-dir", str(data_dir), "--trials", "10000", "--timeout", str(args.budget)]
    # The arms compare samplers and pruners, one training run per trial (as measured in
    # docs/measurements.md, Time to target).
    command += ["--seed", str(arm_seed(arm, seed)), "--seeds-per-trial", "1", "--no-report", "--quiet"]
    command += [*options, *extra]
    if args.threads:
        command += ["--threads", str(args.threads)]
    print(f"arm {arm} ({name}), seed {seed}: running {args.budget:.0f} s ...", flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    points = within(curve(db), args.budget)
    trials = optuna.load_study(study_name="bench", storage=f"sqlite:///{db}").get_trials(deepcopy=False)
    best = points[-1][1] if points else None
    print(f"  arm {arm}, seed {seed}: {len(trials)} trials, best {best if best is not None else float('nan'):.4f}")
    return {
        "seed": seed,
        "curve": points,
        "best": best,
        "trials": len(trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
    }


def summarize(results: dict[str, list[dict]], targets: list[float], budget: float) -> dict[str, dict[str, Any]]:
    """Per arm: best at the budget (median, min, max over seeds) and, per target, the median time to it
    (a run that never reached it counts as the whole budget) and how many runs reached it."""
    out = {}
    for arm, runs in results.items():
        bests = [r["best"] if r["best"] is not None else 0.0 for r in runs]
        times = {str(t): [time_to(r["curve"], t) for r in runs] for t in targets}
        out[arm] = {
            "best_median": statistics.median(bests),
            "best_min": min(bests),
            "best_max": max(bests),
            "time_median": {
                t: statistics.median(s if s is not None else budget for s in ts) for t, ts in times.items()
            },
            "reached": {t: sum(s is not None for s in ts) for t, ts in times.items()},
        }
    return out


def print_table(results: dict[str, list[dict]], summary: dict[str, dict], targets: list[float], budget: float) -> None:
    print(
        f"\n{'arm':<16} {'seed':>4} {'trials':>6} {'pruned':>6} {'best dev':>8} "
        + " ".join(f"{'to ' + format(t, '.4f'):>10}" for t in targets)
    )
    for arm, runs in results.items():
        for run in runs:
            best = "-" if run["best"] is None else f"{run['best']:.4f}"
            times = [time_to(run["curve"], t) for t in targets]
            shown = " ".join(f"{'never' if s is None else f'{s:.0f} s':>10}" for s in times)
            head = f"{arm + ' ' + ARMS[arm][0]:<16} {run['seed']:>4} {run['trials']:>6} {run['pruned']:>6}"
            print(f"{head} {best:>8} {shown}")
    print(f"\nper arm over seeds (budget {budget:.0f} s; a run that missed a target counts as the budget):")
    for arm, s in summary.items():
        times = ", ".join(
            f"to {float(t):.4f} {s['time_median'][t]:.0f} s ({s['reached'][t]}/{len(results[arm])})"
            for t in s["time_median"]
        )
        print(
            f"  {arm} {ARMS[arm][0]:<14} best {s['best_median']:.4f} [{s['best_min']:.4f}, {s['best_max']:.4f}]; "
            f"median time {times}"
        )


def write_figure(results: dict[str, list[dict]], targets: list[float], budget: float, path: Path) -> None:
    figure = go.Figure()
    for arm, runs in results.items():
        for k, run in enumerate(runs):
            xs = [s for s, _ in run["curve"]] + [budget]
            ys = [v for _, v in run["curve"]] + ([run["curve"][-1][1]] if run["curve"] else [])
            figure.add_trace(
                go.Scatter(
                    x=xs[: len(ys)],
                    y=ys,
                    mode="lines+markers",
                    line_shape="hv",
                    line_color=COLORS[arm],
                    legendgroup=arm,
                    showlegend=k == 0,
                    name=f"{arm} {ARMS[arm][0]}",
                    hovertext=f"seed {run['seed']}",
                )
            )
    for t in targets:
        figure.add_hline(y=t, line_dash="dash", annotation_text=f"target {t:.4f}")
    figure.update_layout(
        title="Best dev token macro-F1 against elapsed seconds, one line per seed",
        xaxis_title="seconds",
        yaxis_title="best dev token macro-F1 so far",
    )
    figure.write_html(path, include_plotlyjs="directory")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study.bench",
        description="The suite's search (TPE + median pruning, arm A) against random search without pruning (B) and "
        "TPE with Hyperband pruning (C), the same wall-clock budget each, several seeds per arm.",
        epilog="Example: python -m study.bench --quick --budget 300   (a first look, about 15 minutes)",
    )
    parser.add_argument("--data-dir", help="corpus folder (default: $NER_DATA_DIR, else data/chisiec)")
    parser.add_argument("--budget", type=float, default=1800, help="seconds per arm and seed (default 1800)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds per arm (default 1 2 3)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=["A", "B", "C"], help="arms (default A B C)")
    parser.add_argument(
        "--target",
        type=float,
        nargs="+",
        help="dev scores to reach (default: the median best that random search (B) reaches at the budget)",
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
    try:
        data_dir = resolve_data_dir(args.data_dir)
        load_corpus(data_dir)
        if args.budget <= 0:
            raise UserError(f"--budget must be positive, got {args.budget}")
        if args.jobs < 1:
            raise UserError(f"--jobs must be at least 1, got {args.jobs}")
        if args.target is None and "B" not in args.arms:
            raise UserError("without --target the target is random search's median best: keep arm B in --arms")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = [a for a in args.study_args if a != "--"]
    if args.quick:
        data_dir = write_subset(data_dir, out / "quick-corpus", 400)
        # small models only: a trial that outlives the budget would be cut off unseen
        extra = ["--max-epochs", "8", "--hidden-sizes", "32", "64", "128", "--layers-range", "1", "2", *extra]
    print(
        f"budget {args.budget:.0f} s per run; arms {', '.join(f'{a} ({ARMS[a][0]})' for a in args.arms)}; "
        f"seeds {args.seeds}; corpus {data_dir}; {args.jobs} run(s) at once"
    )
    runs = [(arm, seed) for seed in args.seeds for arm in args.arms]  # arms interleaved: equal machine load
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda run: bench_run(*run, args, data_dir, extra), runs))
    results: dict[str, list[dict]] = {arm: [] for arm in args.arms}
    for (arm, _), run in zip(runs, done):
        results[arm].append(run)
    targets = args.target or [statistics.median(r["best"] or 0.0 for r in results["B"])]
    summary = summarize(results, targets, args.budget)
    print_table(results, summary, targets, args.budget)
    write_figure(results, targets, args.budget, out / "time_to_target.html")
    report = {"targets": targets, "budget": args.budget, "results": results, "summary": summary}
    (out / "time_to_target.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}/time_to_target.html and time_to_target.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
