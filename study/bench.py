"""``python -m study.bench``: how soon does each search strategy reach a target dev score?

Arms, each given the same wall-clock budget on the same corpus and machine:
  A  tpe+median   the suite's defaults (TPE sampling, median pruning)
  B  random       random search, no pruning
  C  tpe          TPE without pruning (with --arms A B C)
Each arm runs ``python -m study.run`` with ``--timeout BUDGET`` into its own SQLite file, once per
seed. Best complete dev score against elapsed seconds is read back from the storage; the table
gives the time each run took to reach the target and the ratio B / A; a plotly HTML shows the
curves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

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
        help="dev token macro-F1 to reach (default: the dev score in results/notebook/metrics.json, "
        "the notebook configuration's full run; with --quick 0.5)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the first 400 training sentences, at most 8 epochs and 128 units per trial",
    )
    parser.add_argument("--threads", type=int, help="torch threads per run (default: torch's choice)")
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
        target = args.target
        if target is None and args.quick:
            target = 0.5
        if target is None:
            metrics = Path("results/notebook/metrics.json")
            if not metrics.is_file():
                raise UserError(f"{metrics}: missing; give --target, or first run: make train")
            target = json.loads(metrics.read_text())["dev"]["token_macro_f1"]
        if args.budget <= 0:
            raise UserError(f"--budget must be positive, got {args.budget}")
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
        f"target dev token macro-F1 {target:.4f}; budget {args.budget:.0f} s per run; arms "
        f"{', '.join(f'{a} ({ARMS[a][0]})' for a in args.arms)}; seeds {args.seeds}; corpus {data_dir}"
    )
    results: dict[str, list[dict]] = {}
    for arm in args.arms:
        name, options = ARMS[arm]
        for seed in args.seeds:
            db = out / f"arm-{arm}-seed-{seed}.db"
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
                "--no-baseline",  # the notebook configuration would cost each arm the same first minutes
                "--quiet",
                *options,
                *extra,
            ]
            if args.threads:
                command += ["--threads", str(args.threads)]
            print(f"arm {arm} ({name}), seed {seed}: running {args.budget:.0f} s ...", flush=True)
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            points = within(curve(db), args.budget)
            reached = time_to(points, target)
            results.setdefault(arm, []).append(
                {"seed": seed, "curve": points, "time_to_target": reached, "best": points[-1][1] if points else None}
            )
            print(
                f"  best {points[-1][1] if points else float('nan'):.4f}; target reached after "
                f"{'not reached' if reached is None else f'{reached:.0f} s'}",
                flush=True,
            )
    print(f"\n{'arm':<14} {'seed':>4} {'best dev':>8} {'time to target':>15}")
    for arm, runs in results.items():
        for run in runs:
            reached = "not reached" if run["time_to_target"] is None else f"{run['time_to_target']:.0f} s"
            best = "-" if run["best"] is None else f"{run['best']:.4f}"
            print(f"{arm + ' ' + ARMS[arm][0]:<14} {run['seed']:>4} {best:>8} {reached:>15}")
    medians = {}
    for arm, runs in results.items():
        # a run that never reached the target counts as the whole budget (a lower bound on its time)
        medians[arm] = statistics.median(r["time_to_target"] or args.budget for r in runs)
    if "A" in medians and "B" in medians:
        print(
            f"median time to target: A {medians['A']:.0f} s, B {medians['B']:.0f} s; B / A = "
            f"{medians['B'] / medians['A']:.2f} (runs that missed count as the budget)"
        )
    figure = go.Figure()
    for arm, runs in results.items():
        for run in runs:
            xs = [s for s, _ in run["curve"]] + [args.budget]
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
    figure.add_hline(y=target, line_dash="dash", annotation_text="target")
    figure.update_layout(
        title="Best dev token macro-F1 against elapsed seconds",
        xaxis_title="seconds",
        yaxis_title="best dev token macro-F1 so far",
    )
    figure.write_html(out / "time_to_target.html", include_plotlyjs="directory")
    (out / "time_to_target.json").write_text(
        json.dumps({"target": target, "budget": args.budget, "results": results, "medians": medians}, indent=2) + "\n"
    )
    print(f"wrote {out}/time_to_target.html and time_to_target.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
